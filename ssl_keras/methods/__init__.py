"""The semi-supervised methods: one module each, and `METHODS`, the one table that lists them.

The article's pipeline (pretext -> fine-tune) lives in `ssl_keras.experiment`; each
method runs after it (`--method`), on the same split:

- `rotation_aux`: rotation as an auxiliary loss (S4L-Rotation, Zhai et al. 2019).
- `self_training`: a teacher's pseudo-labels on the unlabelled pool (S4L, Noisy Student).
- `fixmatch`: consistency between weak and strong augmentation (FixMatch, Sohn et al. 2020).

A method module holds the whole method: its config dataclass, its training (a trainer model
from `ssl_keras.models.build_trainer` whose losses are keyed by output name, fitted by
`ssl_keras.train.fit`, so the training step is Keras' own and runs on any backend), its stage
and the rows that name its classifiers; it ends with its `Method` record
(`ssl_keras.config_base.Method`). Everything else reads this table: `config` (the method
names and `cfg.<method>`), `rundir.classifiers` (and so the report and the results tables)
and the `methods` stage of `ssl_keras.experiment`. Adding a method is adding its module and
its line below.

A method module imports no TensorFlow at import time (`config` reads this table before
TensorFlow loads), nor `config`, `rundir` or `experiment`, which read this table: what it
needs from the run comes through the `Run` its stage receives and `ssl_keras.classifier_stage`.
"""

from ssl_keras.methods import fixmatch, rotation_aux, self_training

# In the order they run after the article's stages.
METHODS = (
    rotation_aux.METHOD,
    self_training.METHOD,
    fixmatch.METHOD,
)
