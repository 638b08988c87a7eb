"""train.py: atomic model saves, what `fit` leaves in a stage directory, and resuming an interrupted fit."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from ssl_keras import evaluate, files, models, train
from ssl_keras.config import ModelConfig, StageConfig

SIZE = 16
CFG = ModelConfig(filters=(4, 8), dense_units=8, dropout=0.0)
STEPS = 2  # batches an epoch
# What a finished stage directory holds: the resume state (backup/state.json, marked done), the best epoch's
# model and its score, the last epoch's model, the history, and TensorBoard logs.
LAYOUT = ["backup", "best.json", "best.keras", "final.keras", "history.csv", "logs"]


def _model():
    return models.build_classifier(CFG, SIZE, 3)


def _pixels(n, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3)).astype("float32")


@pytest.fixture(autouse=True)
def _six_photos_pick_the_best_epoch(monkeypatch):
    """These tests validate on 6 photos and pin the best-epoch checkpoint: count 6 as enough photos."""
    monkeypatch.setattr(train, "SMALL_VALIDATION", 1)


@pytest.fixture(autouse=True)
def _commit_every_epoch(monkeypatch):
    """The kill tests below die at a chosen epoch's commit: commit after every epoch (a test below sets it back)."""
    monkeypatch.setattr(train, "COMMIT_SECONDS", 0.0)


@pytest.fixture
def datasets():
    x, y = _pixels(8 * STEPS), np.arange(8 * STEPS) % 3
    train_ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    val_ds = tf.data.Dataset.from_tensor_slices((_pixels(6, seed=1), np.arange(6) % 3)).batch(6)
    return train_ds, val_ds


def test_committed_model_round_trip_and_no_tmp_file(tmp_path):
    model, path = _model(), str(tmp_path / "m.keras")
    files.commit(path, model.save)
    assert os.listdir(tmp_path) == ["m.keras"]
    x = _pixels(2)
    np.testing.assert_allclose(np.asarray(keras.models.load_model(path)(x)), np.asarray(model(x)), rtol=1e-6)


def test_crash_during_save_keeps_the_previous_file(tmp_path, monkeypatch):
    good, path = _model(), str(tmp_path / "best.keras")
    files.commit(path, good.save)
    x = _pixels(2)
    expected = np.asarray(good(x))

    newer = _model()

    def crashing_save(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"PK\x03\x04 half a zip")  # the start of a .keras file, then the disk fills up
        raise OSError("No space left on device")

    monkeypatch.setattr(keras.Model, "save", crashing_save)  # what is saved is a copy of `newer`
    with pytest.raises(OSError, match="No space left"):
        files.commit(path, newer.save)
    np.testing.assert_allclose(np.asarray(keras.models.load_model(path)(x)), expected, rtol=1e-6)


def test_fit_writes_history_best_and_final(tmp_path, datasets):
    train_ds, val_ds = datasets
    model, stage_dir = _model(), str(tmp_path / "baseline")
    hist = train.fit(model, train_ds, val_ds, StageConfig(epochs=3), stage_dir, steps_per_epoch=STEPS, verbose=0)

    assert sorted(os.listdir(stage_dir)) == LAYOUT
    assert os.listdir(os.path.join(stage_dir, "backup")) == ["state.json"]  # the weight backups are gone
    assert hist == train.read_history(os.path.join(stage_dir, "history.csv"))
    assert hist["epoch"] == [0.0, 1.0, 2.0]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(hist)
    # final.keras is the model as it ended; best.keras scores the best validation accuracy of the history.
    x = _pixels(3, seed=5)
    final = keras.models.load_model(os.path.join(stage_dir, "final.keras"))
    np.testing.assert_allclose(np.asarray(final(x)), np.asarray(model(x)), rtol=1e-5, atol=1e-6)
    best = keras.models.load_model(os.path.join(stage_dir, "best.keras"))
    best.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    assert best.evaluate(val_ds, verbose=0, return_dict=True)["accuracy"] == pytest.approx(max(hist["val_accuracy"]))

    # A second fit without `resume` starts the stage again.
    hist = train.fit(_model(), train_ds, val_ds, StageConfig(epochs=1), stage_dir, steps_per_epoch=STEPS, verbose=0)
    assert hist["epoch"] == [0.0]


class _Interrupt(keras.callbacks.Callback):
    """Ctrl-C at the start of epoch `at` (0-based), after the epochs before it have finished."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise KeyboardInterrupt


def test_interrupted_fit_resumes_from_the_next_epoch(tmp_path, datasets, monkeypatch):
    train_ds, val_ds = datasets
    stage, stage_dir = StageConfig(epochs=4), str(tmp_path / "finetune")

    first = _model()
    fit = first.fit
    monkeypatch.setattr(first, "fit",
                        lambda *a, callbacks=(), **k: fit(*a, callbacks=[*callbacks, _Interrupt(2)], **k))
    with pytest.raises(KeyboardInterrupt):
        train.fit(first, train_ds, val_ds, stage, stage_dir, steps_per_epoch=STEPS, verbose=0)
    assert train.read_history(os.path.join(stage_dir, "history.csv"))["epoch"] == [0.0, 1.0]
    assert os.path.isdir(os.path.join(stage_dir, "backup"))
    assert not os.path.exists(os.path.join(stage_dir, "final.keras"))

    # A new process: a fresh model, the same stage directory.
    second = _model()
    hist = train.fit(second, train_ds, val_ds, stage, stage_dir, steps_per_epoch=STEPS, resume=True, verbose=0)
    assert hist["epoch"] == [0.0, 1.0, 2.0, 3.0]  # 4 rows, not 2 + 4
    assert int(second.optimizer.iterations) == 4 * STEPS  # weights and optimizer state came back from the backup
    assert sorted(os.listdir(stage_dir)) == LAYOUT
    best = keras.models.load_model(os.path.join(stage_dir, "best.keras"))  # the best of all 4 epochs
    best.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    assert best.evaluate(val_ds, verbose=0, return_dict=True)["accuracy"] == pytest.approx(max(hist["val_accuracy"]))


# --- killed at any instant -------------------------------------------------------------------------------------


class _Killed(BaseException):
    """A kill -9 stand-in: nothing after it runs (not even `except Exception` handlers)."""


def _history(stage_dir):
    return train.read_history(os.path.join(stage_dir, "history.csv"))


def _resume_and_check(stage_dir, datasets, epochs=4):
    """Resumes the stage in a fresh model; the finished stage has one history row an epoch."""
    train_ds, val_ds = datasets
    model = _model()
    hist = train.fit(model, train_ds, val_ds, StageConfig(epochs=epochs), stage_dir, steps_per_epoch=STEPS,
                     resume=True, verbose=0)
    assert hist["epoch"] == [float(e) for e in range(epochs)]
    assert _history(stage_dir) == hist
    assert sorted(os.listdir(stage_dir)) == LAYOUT
    best = keras.models.load_model(os.path.join(stage_dir, "best.keras"))
    assert train.validate(best, val_ds)["val_accuracy"] == pytest.approx(max(hist["val_accuracy"]))
    return model, hist


def _kill_at_epoch(monkeypatch, target, name, epoch, stage_dir, datasets, *, before=None):
    """Runs a 4-epoch fit that dies in `target.name` during epoch `epoch` (0-based), after `before()`."""
    original = getattr(target, name)
    calls = {"epoch": -1}

    def dying(*args, **kwargs):
        if calls["epoch"] == epoch:
            if before:
                before(*args, **kwargs)
            raise _Killed
        return original(*args, **kwargs)

    class Epochs(keras.callbacks.Callback):
        def on_epoch_begin(self, e, logs=None):
            calls["epoch"] = e

    monkeypatch.setattr(target, name, dying)
    model = _model()
    fit = model.fit
    monkeypatch.setattr(model, "fit", lambda *a, callbacks=(), **k: fit(*a, callbacks=[Epochs(), *callbacks], **k))
    train_ds, val_ds = datasets
    with pytest.raises(_Killed):
        train.fit(model, train_ds, val_ds, StageConfig(epochs=4), stage_dir, steps_per_epoch=STEPS, verbose=0)
    monkeypatch.setattr(target, name, original)


def test_killed_inside_the_weights_write_resumes_from_the_last_committed_epoch(tmp_path, datasets, monkeypatch):
    stage_dir = str(tmp_path / "stage")

    def half_written(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"\x89HDF\r\n half a file")

    _kill_at_epoch(monkeypatch, keras.Model, "save_weights", 2, stage_dir, datasets, before=half_written)
    assert _history(stage_dir)["epoch"] == [0.0, 1.0]
    _resume_and_check(stage_dir, datasets)


def test_killed_between_the_commit_and_the_history_file(tmp_path, datasets, monkeypatch):
    stage_dir = str(tmp_path / "stage")
    original = files.write_text

    def dying(path, text):
        original(path, text)
        if path.endswith("state.json") and json.loads(text)["epoch"] == 2:
            raise _Killed

    monkeypatch.setattr(files, "write_text", dying)
    train_ds, val_ds = datasets
    with pytest.raises(_Killed):
        train.fit(_model(), train_ds, val_ds, StageConfig(epochs=4), stage_dir, steps_per_epoch=STEPS, verbose=0)
    monkeypatch.setattr(files, "write_text", original)
    assert _history(stage_dir)["epoch"] == [0.0]  # epoch 1 is committed, its history row not yet written
    _resume_and_check(stage_dir, datasets)


def test_killed_before_a_new_best_is_saved_saves_it_on_resume(tmp_path, datasets, monkeypatch):
    stage_dir = str(tmp_path / "stage")
    _kill_at_epoch(monkeypatch, train.Checkpointer, "_save_best", 0, stage_dir, datasets)
    assert not os.path.exists(os.path.join(stage_dir, "best.keras"))  # epoch 0 is committed, best.keras missing
    _resume_and_check(stage_dir, datasets)


def test_the_state_is_committed_after_the_last_epoch_and_every_commit_seconds(tmp_path, datasets, monkeypatch):
    monkeypatch.setattr(train, "COMMIT_SECONDS", 3600.0)
    written = []
    original = files.commit
    monkeypatch.setattr(files, "commit", lambda path, write: (written.append(os.path.basename(path)),
                                                               original(path, write)))
    train_ds, val_ds = datasets
    stage_dir = str(tmp_path / "stage")
    hist = train.fit(_model(), train_ds, val_ds, StageConfig(epochs=4), stage_dir, steps_per_epoch=STEPS, verbose=0)
    best = train.best_epoch(hist)
    # One commit, after the last epoch: its weights, the best epoch's (held in memory), best.keras, final.keras.
    assert [w for w in written if w.endswith((".h5", ".keras"))] == [
        "epoch-4.weights.h5", f"best-{best + 1}.weights.h5", "best.keras", "final.keras"]
    assert len(_history(stage_dir)["epoch"]) == 4


def test_killed_after_a_late_commit_saves_the_earlier_best_on_resume(tmp_path, datasets, monkeypatch):
    # Committed once, after epoch 4; killed before best.keras: the backup's copy of the best epoch makes it.
    monkeypatch.setattr(train, "COMMIT_SECONDS", 3600.0)
    stage_dir = str(tmp_path / "stage")
    _kill_at_epoch(monkeypatch, train.Checkpointer, "_save_best", 3, stage_dir, datasets)
    assert not os.path.exists(os.path.join(stage_dir, "best.keras"))
    state = json.loads(open(os.path.join(stage_dir, "backup", "state.json")).read())
    assert state["epoch"] == 4 and state["best_weights"] == f"best-{state['best']['epoch'] + 1}.weights.h5"
    model, _ = _resume_and_check(stage_dir, datasets)
    assert int(model.optimizer.iterations) == 4 * STEPS  # restored, not trained again


def test_killed_between_final_model_and_done_does_not_train_again(tmp_path, datasets, monkeypatch):
    stage_dir = str(tmp_path / "stage")
    train_ds, val_ds = datasets
    original = train.Checkpointer.finish

    def dying(self):
        files.commit(os.path.join(self.dir, "final.keras"), self.keep.save)
        raise _Killed

    monkeypatch.setattr(train.Checkpointer, "finish", dying)
    with pytest.raises(_Killed):
        train.fit(_model(), train_ds, val_ds, StageConfig(epochs=4), stage_dir, steps_per_epoch=STEPS, verbose=0)
    monkeypatch.setattr(train.Checkpointer, "finish", original)
    model, _ = _resume_and_check(stage_dir, datasets)
    assert int(model.optimizer.iterations) == 4 * STEPS  # restored, not trained again


@pytest.mark.parametrize("damage", ["truncated weights", "truncated state", "state names a missing file"])
def test_a_damaged_backup_restarts_the_stage_and_says_so(tmp_path, datasets, damage):
    stage_dir = str(tmp_path / "stage")
    train_ds, val_ds = datasets
    with pytest.raises(KeyboardInterrupt):
        model = _model()
        fit = model.fit
        model.fit = lambda *a, callbacks=(), **k: fit(*a, callbacks=[*callbacks, _Interrupt(2)], **k)
        train.fit(model, train_ds, val_ds, StageConfig(epochs=4), stage_dir, steps_per_epoch=STEPS, verbose=0)
    backup = os.path.join(stage_dir, "backup")
    weights = next(f for f in os.listdir(backup) if f.endswith(".weights.h5"))
    if damage == "truncated weights":
        with open(os.path.join(backup, weights), "r+b") as f:
            f.truncate(200)
    elif damage == "truncated state":
        with open(os.path.join(backup, "state.json"), "r+b") as f:
            f.truncate(10)
    else:
        os.remove(os.path.join(backup, weights))
    said = []
    hist = train.fit(_model(), train_ds, val_ds, StageConfig(epochs=4), stage_dir, steps_per_epoch=STEPS,
                     resume=True, verbose=0, log=said.append)
    assert hist["epoch"] == [0.0, 1.0, 2.0, 3.0]
    assert len(said) == 1 and "starting the stage over" in said[0], said


def test_few_validation_photos_keep_the_last_epoch(tmp_path, datasets, monkeypatch):
    monkeypatch.setattr(train, "SMALL_VALIDATION", 100)  # the 6 validation photos are few
    train_ds, val_ds = datasets
    stage_dir = str(tmp_path / "stage")
    hist = train.fit(_model(), train_ds, val_ds, StageConfig(epochs=3), stage_dir, steps_per_epoch=STEPS, verbose=0)
    assert hist["val_photos"] == [6.0, 6.0, 6.0]
    assert train.best_epoch(hist) == 2
    with open(os.path.join(stage_dir, "best.json")) as f:
        assert json.load(f)["epoch"] == 2
    best, final = (keras.models.load_model(os.path.join(stage_dir, f)) for f in ("best.keras", "final.keras"))
    x = next(iter(val_ds))[0]
    np.testing.assert_allclose(best.predict(x, verbose=0), final.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


class RecordingClock:
    """What `train.Pace` tells the run's clock (`budget.Clock`'s methods), in order."""

    def __init__(self):
        self.calls = []
        self.spent = {}  # name -> seconds by part besides the steps, as `train.fit` stores them

    def name(self, stage_dir):
        return os.path.basename(stage_dir)

    def start(self, name, epochs=None, steps=None, done=0.0):
        self.calls.append(("start", name, epochs, steps, done))

    def measured(self, name, done, seconds_per_step=None, seconds_per_epoch=None):
        self.calls.append(("step" if seconds_per_step else "epoch", name, done))
        assert (seconds_per_step or seconds_per_epoch) > 0

    def finish(self, name, seconds, epochs=None):
        self.calls.append(("finish", name, epochs))
        assert seconds > 0


def test_pace_times_steps_after_the_warm_up_then_whole_epochs(tmp_path):
    x, y = _pixels(8 * 10), np.arange(8 * 10) % 3
    train_ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()
    val_ds = tf.data.Dataset.from_tensor_slices((_pixels(6, seed=1), np.arange(6) % 3)).batch(6)
    clock = RecordingClock()
    train.fit(_model(), train_ds, val_ds, StageConfig(epochs=3), str(tmp_path / "baseline"), steps_per_epoch=10,
              verbose=0, clock=clock)
    # 2 warm-up steps, then 5 timed: reported after step 7 of 10 (0.7 epochs done); epochs 2 and 3 whole.
    assert clock.calls == [("start", "baseline", 3, 10, 0), ("step", "baseline", 0.7), ("epoch", "baseline", 2),
                           ("epoch", "baseline", 3), ("finish", "baseline", 3)]
    assert set(clock.spent["baseline"]) == {"batchnorm", "validation", "checkpoint"}
    assert clock.spent["baseline"]["validation"] > 0


def test_probe_rate_times_the_rotation_step():
    rate = train.probe_rate(CFG, SIZE, batch_size=4, steps=3, warmup=1)
    assert 0 < rate < 1e7  # rotated samples a second
    assert 0 < train.probe_rate(CFG, SIZE, batch_size=4, steps=3, warmup=1, classes=3) < 1e7


def test_validate_and_recalibration_traced_match_the_eager_call():
    """`compiled_call` traces the model once; its validation scores, test probabilities and BatchNorm statistics
    are the eager call's."""
    model = _model()
    x, y = _pixels(20, seed=2), np.arange(20) % 3
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)  # a partial last batch: one more trace, no error
    probs = np.asarray(model(x, training=False), np.float64)
    expected = float((probs.argmax(1) == y).mean())
    assert train.validate(model, val) == pytest.approx(
        {"val_accuracy": expected, "val_loss": -np.log(probs[np.arange(20), y]).mean(), "val_photos": 20}, rel=1e-5)
    assert train.compiled_call(model, training=False) is train.compiled_call(model, training=False)  # made once
    scored, labels = evaluate.predict_dataset(model, val)  # the test photos' scoring, the same traced call
    np.testing.assert_allclose(scored, probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(labels, y)

    eager, traced = _model(), _model()
    traced.set_weights(eager.get_weights())
    photos = tf.data.Dataset.from_tensor_slices(_pixels(24, seed=3) * 2 + 1).batch(8)  # other statistics
    for batch in photos:
        eager(batch, training=True)
    train.recalibrate_batchnorm(traced, photos, steps=3)
    assert eager.non_trainable_variables  # the BatchNorm layers' moving mean and variance
    for t, e in zip(traced.non_trainable_variables, eager.non_trainable_variables, strict=True):
        np.testing.assert_allclose(np.asarray(t), np.asarray(e), rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(traced.non_trainable_variables[0]),
                           np.asarray(_model().non_trainable_variables[0]))  # they moved


def test_equal_last_epoch_scores_tie_exactly():
    # Keras' float32 accuracies of different epochs average to values that differ in the last bits; the score
    # that picks between classifiers must call them equal so the earlier classifier wins a tie.
    f32 = lambda *xs: [float(np.float32(x)) for x in xs]  # noqa: E731
    assert train.last_epochs_mean({"val_accuracy": f32(0.1, 0.2, 0.3, 0.15, 0.25)}) == \
        train.last_epochs_mean({"val_accuracy": f32(0.2, 0.2, 0.2, 0.2, 0.2)}) == 0.2
    assert train.last_epochs_mean({}) is None


def test_validate_every_third_epoch_and_always_the_last_five(tmp_path, datasets, capsys):
    from ssl_keras.config_base import validated

    stage = StageConfig(epochs=10, validate_every=3)
    assert [e for e in range(10) if validated(stage, e)] == [2, 5, 6, 7, 8, 9]
    train_ds, val_ds = datasets
    stage_dir = str(tmp_path / "baseline")
    hist = train.fit(_model(), train_ds.repeat(), val_ds, stage, stage_dir, steps_per_epoch=STEPS, verbose=2)
    checked = [not np.isnan(v) for v in hist["val_accuracy"]]
    assert checked == [validated(stage, e) for e in range(10)]
    shown = capsys.readouterr().out.split("Epoch ")[1:]  # Keras' line an epoch: validation only where validated
    assert ["val_accuracy: " in line for line in shown] == checked and "nan" not in "".join(shown)
    written = train.read_history(os.path.join(stage_dir, "history.csv"))
    assert set(written) == set(hist)
    for key in hist:
        np.testing.assert_allclose(written[key], hist[key], rtol=1e-12)  # NaN where not validated, as NaN
    best = train.best_epoch(hist)
    assert checked[best] and hist["val_accuracy"][best] == np.nanmax(hist["val_accuracy"])
    assert json.load(open(os.path.join(stage_dir, "best.json")))["epoch"] == best
    assert train.last_epochs_mean(hist) == round(float(np.mean(hist["val_accuracy"][-5:])), 6)


def test_one_cycle_rises_for_the_first_30_percent_then_decays_to_zero():
    model = _model()
    train.compile_model(model, StageConfig(epochs=10, learning_rate=1e-3, schedule="onecycle"), 10)
    at = {step: float(model.optimizer._learning_rate(step)) for step in (0, 15, 30, 65, 100)}
    assert at[0] == pytest.approx(1e-3 / 25) and at[30] == pytest.approx(1e-3)
    assert at[0] < at[15] < at[30] > at[65] > at[100] and at[100] == pytest.approx(0.0, abs=1e-9)
    cosine = _model()
    train.compile_model(cosine, StageConfig(epochs=10, learning_rate=1e-3), 10)
    assert float(cosine.optimizer._learning_rate(0)) == pytest.approx(1e-3)


def _trained_weights(stage, stage_dir, datasets, init, *, interrupt_at=None):
    """Fits a copy of `init`'s weights for `stage` (interrupted at an epoch and resumed, if asked); returns the
    weights of final.keras."""
    train_ds, val_ds = datasets
    model = _model()
    model.set_weights(init)
    if interrupt_at is not None:
        fit = model.fit
        model.fit = lambda *a, callbacks=(), **k: fit(*a, callbacks=[*callbacks, _Interrupt(interrupt_at)], **k)
        with pytest.raises(KeyboardInterrupt):
            train.fit(model, train_ds.repeat(), val_ds, stage, stage_dir, steps_per_epoch=STEPS, verbose=0)
        model = _model()
    train.fit(model, train_ds.repeat(), val_ds, stage, stage_dir, steps_per_epoch=STEPS, resume=True, verbose=0)
    return keras.models.load_model(os.path.join(stage_dir, "final.keras")).get_weights()


def test_ema_validates_and_keeps_the_averaged_weights_and_resumes_exactly(tmp_path, datasets):
    init = _model().get_weights()
    kernel = 0  # the first conv's kernel
    fast = dict(epochs=4, learning_rate=0.05, weight_decay=0.0)
    raw = _trained_weights(StageConfig(**fast), str(tmp_path / "raw"), datasets, init)
    # Momentum 0.999: the average of 8 steps hardly leaves the weights after the first step (Keras starts the
    # average there; Adam's first step moves each weight by about the learning rate); the raw weights move on.
    slow = _trained_weights(StageConfig(**fast, ema=0.999), str(tmp_path / "slow"), datasets, init)
    assert np.abs(slow[kernel] - init[kernel]).max() < 1.1 * fast["learning_rate"]
    assert np.abs(raw[kernel] - init[kernel]).max() > 3 * fast["learning_rate"]
    best = keras.models.load_model(str(tmp_path / "slow" / "best.keras"))  # what was validated is what was kept
    hist = train.read_history(str(tmp_path / "slow" / "history.csv"))
    assert train.validate(best, datasets[1])["val_accuracy"] == pytest.approx(max(hist["val_accuracy"]))
    # Interrupted after 2 epochs and resumed: the same weights as without the interruption.
    stage = StageConfig(**fast, ema=0.5)
    whole = _trained_weights(stage, str(tmp_path / "whole"), datasets, init)
    resumed = _trained_weights(stage, str(tmp_path / "resumed"), datasets, init, interrupt_at=2)
    for a, b in zip(whole, resumed):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_autotune_off_reaches_fit_and_trains_the_same(tmp_path, datasets):
    init = _model().get_weights()
    on = _trained_weights(StageConfig(epochs=2), str(tmp_path / "on"), datasets, init)
    off = _trained_weights(StageConfig(epochs=2, autotune=False), str(tmp_path / "off"), datasets, init)
    for a, b in zip(on, off):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    seen = {}
    model = _model()
    fit = model.fit
    model.fit = lambda ds, **k: (seen.setdefault(len(seen), ds.options().autotune.enabled), fit(ds, **k))[1]
    for autotune in (True, False):
        train.fit(model, datasets[0].repeat(), datasets[1], StageConfig(epochs=1, autotune=autotune),
                  str(tmp_path / str(autotune)), steps_per_epoch=STEPS, verbose=0)
    assert seen[0] is not False and seen[1] is False  # unset (None) is tf.data's default: on


@pytest.mark.parametrize("kind", ["classifier", "fixmatch"])
def test_build_state_makes_every_variable_so_the_first_step_is_traced_once(kind):
    """A variable made inside `fit`'s first step (an optimizer slot, a metric's total, a loss tracker) makes
    TensorFlow trace the step again; `build_state` makes them all first, and the logs keep Keras' names."""
    from ssl_keras.methods import fixmatch

    model = _model()
    x, y = _pixels(4), np.array([0, 1, 2, 0])
    if kind == "classifier":
        train.compile_model(model, StageConfig(epochs=1), 1)
        data = tf.data.Dataset.from_tensors((x, y))
    else:
        model = models.build_trainer(model, CFG, SIZE, consistency=True)
        train.compile_model(model, StageConfig(epochs=1), 1, **fixmatch.compile_args(fixmatch.FixMatchConfig(), 3))
        data = tf.data.Dataset.from_tensors(({"labelled": x, "weak": x, "strong": x},
                                             {"breed": y, "consistency": np.zeros(4, "float32")}))
    train.build_state(model, data)
    made = []

    def creator(next_creator, **kwargs):
        made.append(kwargs.get("name"))
        return next_creator(**kwargs)

    with tf.variable_creator_scope(creator):
        history = model.fit(data, epochs=1, verbose=0, shuffle=False)  # tf.data: nothing for Keras to shuffle
    assert made == []
    assert ("accuracy" if kind == "classifier" else "breed_accuracy") in history.history
