"""`ssl_keras.distribute`: the strategies by name, their errors, and training under them.

Mirrored runs on two logical CPU devices and multi-worker on two processes over
loopback. Both need TensorFlow set up before it starts (logical devices, collective
ops), so they run in subprocesses. The comparison to one device is exact up to
float32 summation order:

- the model has no BatchNorm and no dropout (both would see per-replica halves of a
  batch or per-replica random masks, and differ by more than rounding);
- it trains with plain SGD, whose step is proportional to the gradient, so a wrong
  gradient scale (a replica using its half-batch mean without averaging over replicas,
  or summing instead of averaging) would move the weights by a different amount. Each
  weight moves by ~1e-2 in training and the tolerance is 1e-5 relative: reordering the
  sums of a 16-image batch in float32 perturbs the weights around 1e-7.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

RTOL, ATOL = 1e-5, 1e-6

FIT = textwrap.dedent('''
    """Fits a small conv net on fixed data; `python fit.py MODE OUT.json` (MODE: one, two_cpus, worker)."""
    import json
    import os
    import sys

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    mode, out = sys.argv[1], sys.argv[2]
    if mode == "two_cpus":  # before TensorFlow initialises its devices
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import keras

    from ssl_keras import distribute

    if mode == "worker":  # before any other TensorFlow op
        distribute.strategy_for("multiworker")


    def fit(strategy):
        keras.utils.set_random_seed(0)
        rng = np.random.default_rng(0)
        x = rng.uniform(0, 255, (64, 16, 16, 3)).astype("float32")
        y = rng.integers(0, 4, 64)
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)  # global batches of 16
        with strategy.scope():
            model = keras.Sequential([
                keras.Input((16, 16, 3)),
                keras.layers.Rescaling(1.0 / 255),
                keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(4, activation="softmax"),
            ])
            initial = [w.tolist() for w in model.get_weights()]
            model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy", metrics=["accuracy"])
            hist = model.fit(ds, epochs=2, verbose=0)
        return {"strategy": distribute.describe(strategy), "loss": hist.history["loss"],
                "accuracy": hist.history["accuracy"], "initial": initial,
                "weights": [w.tolist() for w in model.get_weights()]}


    if mode == "one":
        result = fit(distribute.strategy_for("default"))
    elif mode == "two_cpus":
        result = {"one": fit(distribute.strategy_for("default")), "two": fit(distribute.strategy_for("mirrored"))}
    else:
        result = fit(distribute.strategy_for("multiworker"))
    with open(out, "w") as f:
        json.dump(result, f)
''')

RUN_MIRRORED = textwrap.dedent('''
    """`python -m ssl_keras.run ...` on two logical CPU devices; prints the strategy it trained under."""
    import sys

    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    from ssl_keras import distribute, run

    code = run.main(sys.argv[1:])
    print("STRATEGY:", distribute.describe(distribute.strategy_for("mirrored")))
    sys.exit(code)
''')


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _script(tmp_path, text, name):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _assert_same_training(got, want, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(got["initial"][0], want["initial"][0], rtol=0, atol=0)
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=rtol, atol=atol)
    moved = max(np.abs(np.subtract(w, i)).max() for w, i in zip(want["weights"], want["initial"]))
    assert moved > 1000 * atol, f"training barely moved the weights ({moved}); the comparison would prove nothing"
    for g, w in zip(got["weights"], want["weights"]):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


# --- in-process: names and TF_CONFIG errors -------------------------------------------------------


def test_default_is_tensorflows_default_strategy():
    import tensorflow as tf

    from ssl_keras import distribute

    strategy = distribute.strategy_for("default")
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1
    assert distribute.strategy_for("default") is strategy


def test_unknown_strategy_is_an_error():
    from ssl_keras import distribute

    with pytest.raises(ValueError, match=r"Unknown strategy 'horovod'. Expected one of \('default', 'mirrored'"):
        distribute.strategy_for("horovod")


@pytest.mark.parametrize("raw, message", [
    (None, "needs the TF_CONFIG environment variable. Received: none"),
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', "must list `cluster.worker` as host:port strings"),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', "host:port"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}}', "must give this process's `task`"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', "0 <= i < 2"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "must give this process's `task`"),
])
def test_multiworker_rejects_missing_or_bad_tf_config(monkeypatch, raw, message):
    from ssl_keras import distribute

    if raw is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", raw)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        distribute.strategy_for("multiworker")


def test_a_good_tf_config_passes_the_check():
    from ssl_keras import distribute

    raw = '{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}}'
    assert distribute._check_tf_config(raw)["task"]["index"] == 1


# --- subprocesses: training under each strategy ------------------------------------------------------


@pytest.mark.slow
def test_mirrored_on_two_cpu_devices_trains_like_one_device(tmp_path):
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, _script(tmp_path, FIT, "fit.py"), "two_cpus", str(out)],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["one"]["strategy"].endswith("with 1 replica(s) in sync")
    assert result["two"]["strategy"] == "MirroredStrategy with 2 replica(s) in sync"
    _assert_same_training(result["two"], result["one"])


@pytest.mark.slow
def test_multiworker_two_processes_on_loopback_agree_with_one_device(tmp_path):
    fit = _script(tmp_path, FIT, "fit.py")
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs, outs = [], []
    for index in range(2):
        outs.append(tmp_path / f"worker{index}.json")
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen([sys.executable, fit, "worker", str(outs[-1])], cwd=REPO,
                                      env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outs.append(tmp_path / "one.json")
    procs.append(subprocess.Popen([sys.executable, fit, "one", str(outs[-1])], cwd=REPO, env=_env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        logs = [p.communicate(timeout=150) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, logs):
        assert p.returncode == 0, err[-3000:]
    worker0, worker1, one = (json.loads(o.read_text()) for o in outs)
    assert worker0["strategy"] == "CollectiveAllReduceStrategy with 2 replica(s) in sync"
    # Both workers apply the same all-reduced gradients to the same weights: identical models and logs.
    assert worker0["weights"] == worker1["weights"]
    assert worker0["loss"] == worker1["loss"]
    # Each worker trains on its half of every global batch of 16; together they match one device.
    _assert_same_training(worker0, one)


@pytest.mark.slow
def test_run_pretext_stage_under_mirrored(dogs_dir, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, _script(tmp_path, RUN_MIRRORED, "run_mirrored.py"), "pretext", "--preset", "tiny",
         "--strategy", "mirrored", "--data-dir", dogs_dir, "--run-dir", str(run_dir)],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "STRATEGY: MirroredStrategy with 2 replica(s) in sync" in proc.stdout
    assert json.loads((run_dir / "config.json").read_text())["strategy"] == "mirrored"
    history = (run_dir / "pretext" / "history.csv").read_text().strip().splitlines()
    assert len(history) == 1 + 2  # header + the tiny preset's 2 epochs
    assert (run_dir / "pretext" / "best.keras").exists() and (run_dir / "pretext" / "final.keras").exists()
