"""Compile and fit one stage into its directory; the callbacks live here.

A stage directory holds `history.csv`, `best.keras` (best validation epoch),
`final.keras` (last epoch) and, while a stage runs, `backup/` so that an
interrupted fit resumes from its last finished epoch.
"""

from __future__ import annotations

import csv
import os
import shutil

import keras


def save_atomic(model, path: str) -> None:
    """Saves `model` next to `path`, then renames it over `path`: a crash never leaves half a file."""
    tmp = path + ".tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)


class BestCheckpoint(keras.callbacks.Callback):
    """Keeps the model of the best epoch by `monitor` (higher is better), written atomically."""

    def __init__(self, path: str, monitor: str = "val_accuracy", best: float = float("-inf")):
        super().__init__()
        self.path, self.monitor, self.best = path, monitor, best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and value > self.best:
            self.best = float(value)
            save_atomic(self.model, self.path)


def read_history(path: str) -> dict[str, list[float]]:
    """`history.csv` (one row an epoch, as `keras.callbacks.CSVLogger` writes it) as columns."""
    if not os.path.exists(path):
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r[k]) for r in rows] for k in (rows[0] if rows else {})}


def compile_model(model, stage, steps_per_epoch: int) -> None:
    """AdamW with a cosine-decayed learning rate over the stage, sparse cross-entropy, accuracy."""
    schedule = keras.optimizers.schedules.CosineDecay(stage.learning_rate, max(1, stage.epochs * steps_per_epoch))
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=stage.weight_decay),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def fit(model, train_ds, val_ds, stage, stage_dir: str, *, steps_per_epoch: int, resume: bool = False,
        monitor: str = "val_accuracy", verbose=1) -> dict[str, list[float]]:
    """Fits `model` for one stage, keeping the best and final models in `stage_dir`.

    Args:
        model: an uncompiled (or to be recompiled) Keras model.
        train_ds, val_ds: batched `tf.data` data sets of (pixels, labels).
        stage: a `StageConfig`.
        stage_dir: where history, checkpoints and the resume backup go.
        steps_per_epoch: batches in one pass over `train_ds` (for the LR schedule).
        resume: continue from `stage_dir/backup` if an earlier fit was interrupted.
        monitor: the validation metric that picks the best epoch (higher is better).
        verbose: Keras progress output (1 = progress bar, 2 = a line an epoch).

    Returns:
        The history of the whole stage (earlier, resumed epochs included), as columns.
    """
    os.makedirs(stage_dir, exist_ok=True)
    history_path = os.path.join(stage_dir, "history.csv")
    backup = os.path.join(stage_dir, "backup")
    if not resume:
        shutil.rmtree(backup, ignore_errors=True)
        if os.path.exists(history_path):
            os.remove(history_path)
    earlier = read_history(history_path).get(monitor, [])
    compile_model(model, stage, steps_per_epoch)
    callbacks = [
        keras.callbacks.BackupAndRestore(backup, delete_checkpoint=True),
        keras.callbacks.CSVLogger(history_path, append=True),
        BestCheckpoint(os.path.join(stage_dir, "best.keras"), monitor, max(earlier, default=float("-inf"))),
    ]
    if stage.patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor, patience=stage.patience, mode="max"))
    model.fit(train_ds, validation_data=val_ds, epochs=stage.epochs, callbacks=callbacks, verbose=verbose,
              shuffle=False)  # the tf.data pipeline shuffles
    save_atomic(model, os.path.join(stage_dir, "final.keras"))
    return read_history(history_path)
