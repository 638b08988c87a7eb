"""Training procedures that use the unlabelled photos again while the classifier learns.

The article's pipeline (pretext -> fine-tune) lives in `ssl_keras.experiment`; each
module here is one method that runs after it (`--method`), on the same split:

- `rotation_aux`: rotation as an auxiliary loss (S4L-Rotation, Zhai et al. 2019).
- `self_training`: a teacher's pseudo-labels on the unlabelled pool (S4L, Noisy Student).
- `fixmatch`: consistency between weak and strong augmentation (FixMatch, Sohn et al. 2020).

Each trains a breed classifier with `ssl_keras.train.fit` through a trainer model
(`ssl_keras.models.build_trainer`) whose losses are keyed by output name, so the
training step is Keras' own and runs on any backend.
"""
