"""The GPU path runs: the model, the rotation transform and training steps under `KERAS_BACKEND=jax` (JAX on the
CPU here), with TensorFlow made unimportable, as on the lent GPU machines that have JAX and no TensorFlow."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent('''
    import importlib.abc
    import json
    import sys

    class NoTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                raise ImportError(f"{name} is not installed on the GPU machines")

    sys.meta_path.insert(0, NoTensorFlow())

    import keras
    import numpy as np

    from ssl_keras import models, presets, rotations, train
    from ssl_keras.methods import fixmatch

    from ssl_keras import config as config_lib

    assert keras.backend.backend() == "jax", keras.backend.backend()
    # no dropout and a larger step, so that 10 steps on one batch must lower its loss
    cfg = config_lib.override(presets.tiny(), {"model": {"dropout": 0.0}, "pretext": {"learning_rate": 0.01},
                                               "finetune": {"learning_rate": 0.01}})
    size = cfg.data.image_size
    rng = np.random.default_rng(0)
    photos = rng.uniform(0, 255, (4, size, size, 3)).astype("float32")
    rotated, labels = rotations.rotate_batch(photos)
    rotated = np.asarray(rotated)
    assert rotated.shape == (16, size, size, 3)
    assert all(np.array_equal(rotated[4 * k:4 * (k + 1)], np.rot90(photos, k, axes=(1, 2))) for k in range(4))

    out = {}
    model = models.build_rotation_model(cfg.model, size)
    train.compile_model(model, cfg.pretext, 10)
    out["rotation"] = [float(model.train_on_batch(rotated, np.asarray(labels))[0]) for _ in range(10)]

    classifier = models.build_classifier(cfg.model, size, 3)
    # the strong views of the 2 most confident of 4 weak views (fixmatch.strong_share 0.5: top_k and take on JAX)
    trainer = models.build_trainer(classifier, cfg.model, size, rotation=True, consistency=True, strong_rows=2)
    train.compile_model(trainer, cfg.finetune, 10,
                        loss={"breed": "sparse_categorical_crossentropy", "rotation": "sparse_categorical_crossentropy",
                              "consistency": fixmatch.confident_cross_entropy(0.3, 3, kept=0.5)},
                        metrics={"breed": ["accuracy"]})
    x = {"labelled": photos, "rotated": rotated, "weak": photos, "strong": photos[::-1]}
    y = {"breed": np.array([0, 1, 2, 0]), "rotation": np.asarray(labels), "consistency": np.zeros(2)}
    before = [np.array(w) for w in classifier.get_weights()]
    out["trainer"] = [float(trainer.train_on_batch(x, y)[0]) for _ in range(10)]
    out["moved"] = max(float(np.abs(a - b).max()) for a, b in zip(before, classifier.get_weights()))
    out["tensorflow_loaded"] = any(m == "tensorflow" or m.startswith("tensorflow.") for m in sys.modules)
    print("RESULT " + json.dumps(out))
''')


@pytest.mark.slow
def test_model_rotations_and_training_steps_run_on_jax_without_tensorflow(tmp_path):
    pytest.importorskip("jax", reason="JAX is not installed (it comes with tensorflowjs)")
    script = tmp_path / "jax_check.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[len("RESULT "):])
    assert not result["tensorflow_loaded"]
    for key in ("rotation", "trainer"):
        assert all(v == v and v < 1e3 for v in result[key]), result  # finite losses
        assert result[key][-1] < result[key][0], f"{key}: the loss did not go down in 10 steps: {result[key]}"
    assert result["moved"] > 0  # the classifier's weights are the trainer's: training moved them
