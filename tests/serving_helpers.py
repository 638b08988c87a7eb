"""Shared by test_export, the test_serving_* files and test_web: one small trained and exported model a session.

The model is trained on the real photos in ../shared/data/dogs (3 breeds, 32 px,
a few seconds on a CPU) and exported once; its 60 test photos are the real
photos every artefact is compared on.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "dogs"))
MODEL_NAME = "dog_breeds"
MIN_PHOTOS = 50
TOLERANCE = 1e-4
# The tiny preset, with enough labels and epochs that the top-1 breed varies from photo to photo,
# and 20 test photos a breed (60 in all).
TRAIN_ARGS = ["--preset", "tiny", "--data-dir", DATA_DIR, "--labels-per-class", "40", "--epochs", "8",
              "--set", "baseline.learning_rate=0.003", "--set", "data.max_test_per_class=20"]

_cache: dict = {}


def require_photos() -> None:
    if not os.path.isdir(DATA_DIR):
        pytest.skip(f"The real photos are not there: {DATA_DIR} is missing (the shared data folder "
                    "beside the repo, one sub-folder of photos per breed).")


def exported(tmp_path_factory) -> dict:
    """Trains (once a session) the small model and exports it; returns paths, classes and test photos.

    Keys: run_dir, export_dir, base_path, keras_path, classes, info (export.json),
    photos (paths of the >= 50 test photos), labels.
    """
    require_photos()
    if "model" not in _cache:
        from ssl_keras import run

        if not os.path.exists(os.path.join(REPO, "node_modules", "@tensorflow", "tfjs", "dist", "tf.min.js")):
            pytest.fail(f"TF.js is not installed: run `npm ci` in {REPO}.")
        root = tmp_path_factory.mktemp("serving")
        run_dir, export_dir = str(root / "run"), str(root / "export")
        assert run.main(TRAIN_ARGS + ["--run-dir", run_dir, "baseline"]) == 0
        assert run.main(["--run-dir", run_dir, "export", "--export-dir", export_dir]) == 0
        with open(os.path.join(run_dir, "split.json")) as f:
            split = json.load(f)
        with open(os.path.join(export_dir, "export.json")) as f:
            info = json.load(f)
        photos = [os.path.join(DATA_DIR, key) for key, _ in split["test"]]
        assert len(photos) >= MIN_PHOTOS, f"only {len(photos)} test photos; expected >= {MIN_PHOTOS}"
        _cache["model"] = {
            "run_dir": run_dir, "export_dir": export_dir, "classes": split["classes"], "info": info,
            "base_path": os.path.join(export_dir, "saved_model", MODEL_NAME),
            "keras_path": os.path.join(run_dir, "baseline", "best.keras"),
            "photos": photos, "labels": [label for _, label in split["test"]],
        }
    return _cache["model"]


def decode(path: str) -> np.ndarray:
    """A photo as float32 (H, W, 3) pixels 0..255, by the project's one decoder (as the SavedModel does)."""
    from ssl_keras import preprocessing

    return preprocessing.read_photo(path).astype(np.float32)


def keras_probabilities(model_info: dict) -> np.ndarray:
    """(N, C) probabilities of the Keras model on the full-size test photos (cached)."""
    if "keras_probs" not in model_info:
        import keras

        model = keras.models.load_model(model_info["keras_path"])
        model_info["keras_probs"] = np.concatenate(
            [np.asarray(model(decode(p)[None], training=False)) for p in model_info["photos"]])
    return model_info["keras_probs"]


def assert_same_predictions(reference: np.ndarray, other: np.ndarray, what: str, tolerance: float = TOLERANCE):
    """Probabilities within `tolerance` and the same top-1 breed (up to ties closer than the tolerance)."""
    reference, other = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    assert other.shape == reference.shape, f"{what}: shape {other.shape}, expected {reference.shape}"
    diff = np.abs(other - reference).max()
    assert diff <= tolerance, f"{what}: probabilities differ from Keras by up to {diff:.2e} (> {tolerance})"
    top = other.argmax(1)
    rows = np.arange(len(reference))
    tied = reference[rows, top] >= reference.max(1) - 2 * tolerance
    assert tied.all(), f"{what}: top-1 breed differs from Keras on photos {np.flatnonzero(~tied).tolist()}"
    return diff


@contextlib.contextmanager
def rest_server(base_path: str | None = None, *, app=None, **limits):
    """`ssl_keras.serving.rest`'s app (`app`, or one made for `base_path`) on a free loopback port, in a thread;
    yields its /v1/models URL.

    `limits` go to `rest.create_app` (e.g. max_body_bytes) and `rest.uvicorn_config` (header_seconds,
    body_seconds).
    """
    import uvicorn

    from ssl_keras.serving import rest

    timeouts = {k: limits.pop(k) for k in ("header_seconds", "body_seconds") if k in limits}
    if app is None:
        app = rest.create_app(base_path, MODEL_NAME, poll_seconds=0, **limits)
    server = uvicorn.Server(rest.uvicorn_config(app, port=0, **timeouts))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1/models"
    finally:
        server.should_exit = True
        thread.join(10)


def call(url, body=None, method=None, raw=None):
    """(status, JSON answer) of a REST request; `body` is sent as JSON, `raw` as is."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        assert "Traceback" not in text
        return e.code, json.loads(text)
