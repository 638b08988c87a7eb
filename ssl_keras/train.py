"""Compile and fit one stage into its directory; the callbacks live here.

A stage directory holds `history.csv`, `best.keras` (best validation epoch) with
`best.json` (its epoch and score), `final.keras` (last epoch), `logs/` (TensorBoard)
and `backup/` (the resume state). After the last epoch, and after any epoch that ends
`COMMIT_SECONDS` or more after the last commit, the state is committed in a fixed order —
the weights (with the optimizer) and, if a new best epoch came since the last commit,
that epoch's weights (kept in memory until then), then `backup/state.json` (epoch,
history, best), then `best.keras` — each committed by `ssl_keras.files` (a temporary
file, fsync, rename), so a run killed at any instant resumes from its last committed
epoch, losing at most the epochs of the last `COMMIT_SECONDS` and the one in progress,
with no duplicate history rows and no half-written file. `history.csv` is rewritten every epoch (and from the state on resume).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import time
import weakref

import keras
import numpy as np

from ssl_keras import files, models
from ssl_keras.config_base import LAST_VALIDATED, validated

STATE = "state.json"
# Seconds between commits of the resume state. A commit (two weights files and `best.keras`) costs about a
# tenth of a second: every epoch, it was a fifth of the labelled stages' time at 32 px (BENCHMARKS §6).
COMMIT_SECONDS = 30.0


def save_model(model, path: str) -> None:
    """Commits `model` at `path` (`files.commit`), made of Keras' own layers (`models.with_keras_layers`):
    a crash never leaves half a file, and plain `keras.models.load_model` reads it.

    The file holds the architecture and the weights, no optimizer (the resume state is in `backup/`).
    """
    files.commit(path, models.with_keras_layers(model).save)


def read_history(path: str) -> dict[str, list[float]]:
    """`history.csv` (one row an epoch) as columns."""
    if not os.path.exists(path):
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r[k]) for r in rows] for k in (rows[0] if rows else {})}


def _history_csv(history: dict[str, list[float]]) -> str:
    keys = ["epoch"] + sorted(k for k in history if k != "epoch")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(keys)
    for i in range(len(history.get("epoch", []))):
        writer.writerow([history[k][i] if i < len(history[k]) else "" for k in keys])
    return out.getvalue()


class Checkpointer(keras.callbacks.Callback):
    """Validation, history, best and final models, early stopping and resume, for one stage.

    Args:
        stage_dir: the stage directory.
        keep: the classifier that is validated and saved (the trained model itself, or
            the classifier inside a semi-supervised trainer that shares its layers).
        val_ds: batches of (pixels, class index) to score `keep` on after each epoch.
        patience: stop after this many epochs without a better `val_accuracy` (0: never).
        resume: restore the committed state of an earlier, interrupted fit.
        before_validation: called with `keep` after each epoch, before it is validated and saved
            (e.g. `recalibrate_batchnorm`).
        validate_when: `(epoch) -> bool`, whether to validate after that 0-based epoch (default: always).
            An epoch not validated has NaN validation columns and is never kept as the best.
    """

    def __init__(self, stage_dir, keep, val_ds, patience=0, resume=False, log=print, before_validation=None,
                 validate_when=None):
        super().__init__()
        self.dir, self.keep, self.val_ds, self.patience, self.log = stage_dir, keep, val_ds, patience, log
        self.before_validation, self.validate_when = before_validation, validate_when
        self.backup = os.path.join(stage_dir, "backup")
        self.history: dict[str, list[float]] = {}
        self.best = {"epoch": -1, "val_accuracy": float("-inf")}
        self.best_weights = None  # `keep`'s weights at a best epoch not yet committed
        self.committed = time.perf_counter()
        self.spent = {"batchnorm": 0.0, "validation": 0.0, "checkpoint": 0.0}  # seconds in this fit, by part
        self.done = False
        if not resume:
            shutil.rmtree(self.backup, ignore_errors=True)
            for name in ("history.csv", "best.json"):
                if os.path.exists(os.path.join(stage_dir, name)):
                    os.remove(os.path.join(stage_dir, name))
        os.makedirs(self.backup, exist_ok=True)

    # -- the committed state -----------------------------------------------------------------------------------

    def _read_state(self) -> dict | None:
        path = os.path.join(self.backup, STATE)
        if not os.path.exists(path):
            return None
        try:
            with open(path) as f:
                state = json.load(f)
            weights = os.path.join(self.backup, state["weights"])
            assert isinstance(state["epoch"], int) and os.path.exists(weights)
            return state
        except (OSError, ValueError, KeyError, TypeError, AssertionError) as e:
            self.log(f"Resume state {path} is unreadable ({type(e).__name__}); starting the stage over.")
            return None

    def restore(self) -> int:
        """Loads the last committed epoch into the model; returns the number of finished epochs."""
        state = self._read_state()
        if state is None:
            return 0
        if not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        name = state["weights"]
        try:
            if state.get("best_weights") and self._best_saved_epoch() != state["best"]["epoch"]:
                name = state["best_weights"]  # killed after the commit, before best.keras: the backup holds it
                self.keep.load_weights(os.path.join(self.backup, name))
                self.best = state["best"]
                self._save_best()
                name = state["weights"]
            self.model.load_weights(os.path.join(self.backup, name))
        except Exception as e:  # h5py and Keras raise many types for a damaged file
            self.log(f"Resume backup {name} is damaged ({type(e).__name__}: {e}); starting the stage over.")
            return 0
        self.history, self.best, self.done = state["history"], state["best"], state.get("done", False)
        files.write_text(os.path.join(self.dir, "history.csv"), _history_csv(self.history))
        self.log(f"Resuming {self.dir} after epoch {state['epoch']} (of the committed state in {self.backup}).")
        return state["epoch"]

    def _best_saved_epoch(self) -> int | None:
        try:
            with open(os.path.join(self.dir, "best.json")) as f:
                return json.load(f)["epoch"]
        except (OSError, ValueError, KeyError):
            return None

    def _save_best(self) -> None:
        save_model(self.keep, os.path.join(self.dir, "best.keras"))
        files.write_text(os.path.join(self.dir, "best.json"), json.dumps(self.best))

    def _commit(self, epoch: int) -> None:
        name, best_name = f"epoch-{epoch + 1}.weights.h5", None
        files.commit(os.path.join(self.backup, name), self.model.save_weights)
        current = None
        if self.best_weights is not None:
            best_name, current = f"best-{self.best['epoch'] + 1}.weights.h5", self.keep.get_weights()
            self.keep.set_weights(self.best_weights)
            files.commit(os.path.join(self.backup, best_name), self.keep.save_weights)
        state = {"epoch": epoch + 1, "weights": name, "best_weights": best_name, "history": self.history,
                 "best": self.best, "done": self.done}
        files.write_text(os.path.join(self.backup, STATE), json.dumps(state))
        for old in os.listdir(self.backup):  # earlier epochs and stray temporary files
            if old not in (name, best_name, STATE):
                os.remove(os.path.join(self.backup, old))
        if current is not None:
            self._save_best()
            self.keep.set_weights(current)
            self.best_weights = None
        self.committed = time.perf_counter()

    # -- the callback ------------------------------------------------------------------------------------------

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        start = time.perf_counter()
        checking = self.validate_when is None or self.validate_when(epoch)
        if checking and self.before_validation is not None:
            self.before_validation(self.keep)
        validating = time.perf_counter()
        val = validate(self.keep, self.val_ds) if checking else dict.fromkeys(VAL_KEYS, math.nan)
        if checking:  # an epoch not validated shows no validation on screen; its history row holds NaN
            logs.update(val)
        saving = time.perf_counter()
        self.spent["batchnorm"] += validating - start
        self.spent["validation"] += saving - validating
        for name in ("breed_accuracy", "categorical_accuracy", "breed_categorical_accuracy"):  # a trainer's breed head
            if "accuracy" not in logs and name in logs:
                logs["accuracy"] = logs[name]
        row = {"epoch": float(epoch), **{k: float(v) for k, v in {**logs, **val}.items() if np.ndim(v) == 0}}
        for k, v in row.items():
            self.history.setdefault(k, []).append(v)
        improved = checking and (row.get("val_accuracy", float("-inf")) > self.best["val_accuracy"]
                                 or row.get("val_photos", SMALL_VALIDATION) < SMALL_VALIDATION)  # few: the last
        if improved:
            self.best = {"epoch": epoch, "val_accuracy": row["val_accuracy"]}
            self.best_weights = self.keep.get_weights()
        if self.patience and epoch - self.best["epoch"] >= self.patience:
            self.done = self.model.stop_training = True
        if (self.done or epoch + 1 >= self.params.get("epochs", 0)
                or time.perf_counter() - self.committed >= COMMIT_SECONDS):
            self._commit(epoch)
        files.write_text(os.path.join(self.dir, "history.csv"), _history_csv(self.history))
        self.spent["checkpoint"] += time.perf_counter() - saving

    def finish(self) -> None:
        """After `fit`: `final.keras`, then the state marked done, then the weight backups removed."""
        save_model(self.keep, os.path.join(self.dir, "final.keras"))
        self.done = True
        state = self._read_state()
        if state is not None:
            state["done"] = True
            files.write_text(os.path.join(self.backup, STATE), json.dumps(state))
        for old in os.listdir(self.backup):
            if old != STATE:
                os.remove(os.path.join(self.backup, old))


class Pace(keras.callbacks.Callback):
    """Times a fit for the run's clock (`budget.Clock`): its steps after `warmup`, then its whole epochs.

    The first `warmup` steps of a fit build and trace the step function; the next `measure`
    steps (or those left in the first epoch) give its seconds a step. From the second epoch
    on, the mean of its whole epochs after the first (validation and checkpoints included)
    replaces that. Put it last among the callbacks, so an epoch's time includes theirs.

    Args:
        clock: a `budget.Clock`.
        stage_dir: the fit's stage directory (its name in the clock).
    """

    def __init__(self, clock, stage_dir: str, warmup: int = 2, measure: int = 5):
        super().__init__()
        self.clock, self.fit_name, self.warmup, self.measure = clock, clock.name(stage_dir), warmup, measure

    def on_train_begin(self, logs=None):
        self.begin, self.step, self.mark = time.perf_counter(), 0, None
        self.first_epoch = self.last_epoch = None
        self.epoch_seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch is None:  # a resumed fit begins after its finished epochs
            self.first_epoch = epoch
            self.clock.start(self.fit_name, self.params.get("epochs"), self.params.get("steps"), done=epoch)
        self.epoch, self.epoch_start = epoch, time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step == self.warmup:
            self.mark = (self.step, time.perf_counter())
        elif self.mark and self.step - self.mark[0] == self.measure:
            self._report_steps(batch)

    def _report_steps(self, batch):
        """Seconds a step since the warm-up, once."""
        if self.mark and self.step > self.mark[0]:
            seconds = (time.perf_counter() - self.mark[1]) / (self.step - self.mark[0])
            done = self.epoch + (batch + 1) / (self.params.get("steps") or batch + 1)
            self.clock.measured(self.fit_name, done, seconds_per_step=seconds)
        self.mark = None

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.first_epoch:
            self._report_steps(self.params.get("steps", 1) - 1)  # an epoch shorter than warm-up and measure
        else:
            self.epoch_seconds.append(time.perf_counter() - self.epoch_start)
            self.clock.measured(self.fit_name, epoch + 1,
                                seconds_per_epoch=sum(self.epoch_seconds) / len(self.epoch_seconds))
        self.last_epoch = epoch

    def on_train_end(self, logs=None):
        epochs = None if self.last_epoch is None else self.last_epoch + 1  # fewer when it stopped early
        self.clock.finish(self.fit_name, time.perf_counter() - self.begin, epochs=epochs)


def probe_rate(model_cfg, image_size: int, batch_size: int, steps: int = 5, warmup: int = 2,
               classes: int | None = None) -> float:
    """This machine's training samples/s: the median of `steps` steps (after `warmup`) on one random in-memory
    batch, of the rotation model on `4 * batch_size` photos as the pretext stage feeds it, or, given `classes`,
    of a classifier on `batch_size` photos as the labelled stages feed it.

    Only the step is timed (no data pipeline, no validation): `budget.Clock` plans with it until
    the run's own fits are measured.
    """
    from ssl_keras.config_base import StageConfig

    n = batch_size if classes else 4 * batch_size
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (n, image_size, image_size, 3)).astype("float32")
    y = rng.integers(0, classes or 4, n)
    model = (models.build_classifier(model_cfg, image_size, classes) if classes
             else models.build_rotation_model(model_cfg, image_size))
    compile_model(model, StageConfig(epochs=1), steps + warmup)
    for _ in range(warmup):
        model.train_on_batch(x, y)
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)  # returns the loss: the step has finished
        seconds.append(time.perf_counter() - start)
    return len(x) / float(np.median(seconds))


def recalibrate_batchnorm(model, batches, steps: int = 50) -> None:
    """Re-estimates the moving statistics of `model`'s BatchNorm layers on `steps` batches of `batches`.

    Runs the model in training mode without gradients: each trainable BatchNorm layer moves its
    averages towards the statistics of these batches (momentum 0.9: after 50 batches the old values
    weigh 0.5 %). For a trainer whose extra views (strongly augmented photos) have other statistics
    than the photos the model is used on ("precise BN", Wu & Johnson 2021).
    """
    forward = compiled_call(model, training=True)
    for x in batches.take(steps):
        forward(x[0] if isinstance(x, tuple) else x)


VAL_KEYS = ("val_accuracy", "val_loss", "val_photos")


def validate(model, dataset) -> dict[str, float]:
    """`val_accuracy` and `val_loss` (cross-entropy) of a classifier on batches of (pixels, class index)."""
    forward = compiled_call(model, training=False)
    correct = n = 0
    loss = 0.0
    for x, y in dataset:
        probs = np.asarray(forward(x), np.float64)
        y = np.asarray(y).astype(int)
        correct += int((probs.argmax(1) == y).sum())
        loss -= float(np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)).sum())
        n += len(y)
    return {"val_accuracy": correct / max(n, 1), "val_loss": loss / max(n, 1), "val_photos": n}


_COMPILED = weakref.WeakKeyDictionary()  # model -> {training: its call, traced once}


def compiled_call(model, training: bool):
    """`model(x, training=training)` as one traced graph (`tf.function`) on the TensorFlow backend, made once a
    model: run eagerly, a small model's call on a batch costs its Python op by op, and validation and BatchNorm
    re-estimation then took a third of a stage's time (BENCHMARKS §6). A one-input model's call takes any batch size
    in one trace (the last, smaller batch traced it again; 0.06 s a fit, `benchmarks/bench_first_step.py`). Other
    backends: the plain call."""
    calls = _COMPILED.setdefault(model, {})
    if training not in calls:
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            inputs = model.inputs if len(model.inputs) == 1 else None  # any batch size: traced once, not per size
            signature = [tf.TensorSpec([None, *inputs[0].shape[1:]], inputs[0].dtype)] if inputs else None
            calls[training] = tf.function(lambda x: model(x, training=training), input_signature=signature,
                                          reduce_retracing=signature is None)
        else:
            calls[training] = lambda x: model(x, training=training)
    return calls[training]


def compile_model(model, stage, steps_per_epoch: int, loss="sparse_categorical_crossentropy", loss_weights=None,
                  metrics=("accuracy",)) -> None:
    """AdamW with the stage's learning-rate schedule (`StageConfig.schedule`); `loss` and `metrics` as Keras takes
    them."""
    steps = max(1, stage.epochs * steps_per_epoch)
    if stage.schedule == "onecycle":
        warmup = max(1, round(0.3 * steps))
        schedule = keras.optimizers.schedules.CosineDecay(stage.learning_rate / 25, max(1, steps - warmup),
                                                          warmup_target=stage.learning_rate, warmup_steps=warmup)
    else:
        schedule = keras.optimizers.schedules.CosineDecay(stage.learning_rate, steps)
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=stage.weight_decay, use_ema=stage.ema > 0,
                                       ema_momentum=stage.ema or 0.99)
    model.compile(optimizer=optimizer, loss=loss,
                  loss_weights=loss_weights, metrics=list(metrics) if isinstance(metrics, tuple) else metrics)


def build_state(model, train_ds) -> None:
    """Makes a compiled model's optimizer slots, metrics and loss trackers now, from the shapes of `train_ds`'s batches.

    Keras on TensorFlow makes them inside the first training step when no distribution strategy was set, and a
    variable made while `fit` traces its step makes TensorFlow trace it twice: 1.5 s of a 2.7 s first step of
    `quick`'s classifier, in every fit (`benchmarks/bench_first_step.py`, BENCHMARKS §6.3 round 12). This is
    Keras' own build from shapes (`Trainer._symbolic_build`, what `fit` runs under a strategy); without it (another
    Keras), the step is traced twice, as before.
    """
    symbolic_build = getattr(model, "_symbolic_build", None)
    if symbolic_build is not None and hasattr(train_ds, "element_spec"):
        symbolic_build(data_batch=train_ds.element_spec)


def fit(model, train_ds, val_ds, stage, stage_dir: str, *, steps_per_epoch: int, resume: bool = False,
        keep=None, loss="sparse_categorical_crossentropy", loss_weights=None, metrics=("accuracy",),
        verbose=1, log=print, before_validation=None, clock=None) -> dict[str, list[float]]:
    """Fits `model` for one stage, keeping the best and final models of `keep` in `stage_dir`.

    Args:
        model: an uncompiled (or to be recompiled) Keras model.
        train_ds: batched training data (endless when `steps_per_epoch` bounds the epochs).
        val_ds: batches of (pixels, class index) for `keep`; its accuracy picks the best epoch.
        stage: a `StageConfig` (epochs, learning rate, weight decay, patience).
        stage_dir: where history, checkpoints, TensorBoard logs and the resume state go.
        steps_per_epoch: batches in one epoch (for the learning-rate schedule too).
        resume: continue from the committed state in `stage_dir/backup`.
        keep: the classifier to validate and save (default: `model`).
        loss, loss_weights, metrics: as `model.compile` takes them (keyed by output name for
            a model with several outputs).
        verbose: Keras progress output (1 = progress bar, 2 = a line an epoch).
        before_validation: called with `keep` after each epoch, before it is validated.
        clock: the run's `budget.Clock`, told how fast this fit goes (`Pace`); None: not timed.

    Returns:
        The history of the whole stage (resumed epochs included), as columns.
    """
    os.makedirs(stage_dir, exist_ok=True)
    keep = model if keep is None else keep
    compile_model(model, stage, steps_per_epoch, loss, loss_weights, metrics)
    checkpointer = Checkpointer(stage_dir, keep, val_ds, stage.patience, resume, log, before_validation,
                                validate_when=lambda epoch: validated(stage, epoch))
    checkpointer.set_model(model)
    build_state(model, train_ds)
    done = checkpointer.restore() if resume else 0
    if not checkpointer.done and done < stage.epochs:
        model._initial_epoch = done or None
        callbacks = [checkpointer, keras.callbacks.TensorBoard(os.path.join(stage_dir, "logs"), write_graph=False,
                                                               profile_batch=0)]
        if stage.ema:  # first: the averaged weights are swapped in at an epoch's end, before they are validated
            swap = keras.callbacks.SwapEMAWeights(swap_on_epoch=True)
            swap._ema_weights_in_model = bool(done)  # the committed state holds them swapped; swap back first
            callbacks.insert(0, swap)
        if not stage.autotune and keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            options = tf.data.Options()
            options.autotune.enabled = False
            train_ds = train_ds.with_options(options)
        if clock is not None:
            callbacks.append(Pace(clock, stage_dir))  # last: an epoch's time includes validation
        model.fit(train_ds, epochs=stage.epochs, steps_per_epoch=steps_per_epoch, callbacks=callbacks,
                  verbose=verbose, shuffle=False)  # the tf.data pipeline shuffles
        if clock is not None:
            clock.spent[clock.name(stage_dir)] = dict(checkpointer.spent)
    checkpointer.finish()
    return checkpointer.history


def last_epochs_mean(history: dict[str, list[float]], n: int = LAST_VALIDATED) -> float | None:
    """The mean `val_accuracy` of the last `n` validated epochs: a score of a stage that, unlike the best epoch's,
    is not the largest of many noisy values (what picks between classifiers). Rounded to 6 digits, so that
    stages with equal scores tie exactly (float32 sums of different epochs differ in the last bits)."""
    values = [v for v in history.get("val_accuracy", []) if not math.isnan(v)][-n:]
    return round(float(np.mean(values)), 6) if values else None


# Below this many validation photos a stage keeps its last epoch, not its best one: the 95 % interval of an
# accuracy on 100 photos is about +-10 points, so the best of 60 epochs' scores is mostly the luck of the draw,
# while the last epoch is where the cosine schedule has settled.
SMALL_VALIDATION = 100


def best_epoch(history: dict[str, list[float]]) -> int | None:
    """The 0-based epoch a stage keeps: the highest `val_accuracy` (the first of equals), or the last epoch when it
    was validated on fewer than `SMALL_VALIDATION` photos; None without one."""
    values = history.get("val_accuracy", [])
    if values and history.get("val_photos", [SMALL_VALIDATION])[-1] < SMALL_VALIDATION:
        return len(values) - 1
    return int(np.nanargmax(values)) if values and not all(math.isnan(v) for v in values) else None
