"""What `config` and the method modules both build on: `check`, `StageConfig`, and the `Method` record.

`config` reads the method table (`ssl_keras.methods`) for the method names and their configs, so a
method module cannot import `config`: what it needs lives here, below both. No TensorFlow here.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

STRATEGIES = ("default", "mirrored", "multiworker")
STUDENT_INITS = ("scratch", "pretext", "teacher")  # where a method's classifier starts
SCHEDULES = ("cosine", "onecycle")
LAST_VALIDATED = 5  # a stage's last epochs, always validated: their mean validation accuracy is its score


def validated(stage, epoch: int) -> bool:
    """Whether a fit of `stage` (a `StageConfig`) validates after its 0-based `epoch`."""
    return (epoch + 1) % stage.validate_every == 0 or epoch >= stage.epochs - LAST_VALIDATED


def check(cond, msg):
    """Raises `ValueError(msg)` unless `cond`: how every config dataclass refuses a value."""
    if not cond:
        raise ValueError(msg)


@dataclass(frozen=True)
class StageConfig:
    """How one training stage fits: epochs, optimiser, early stopping, validation, augmentation.

    `schedule`: the learning rate over the stage's steps. "cosine" decays it from `learning_rate` to 0;
    "onecycle" (Smith & Topin 2019) rises from `learning_rate` / 25 to `learning_rate` over the first 30 % of the
    steps, then decays to 0 on a cosine. `validate_every`: validate (and so consider keeping) every k-th epoch,
    and always each of the last `LAST_VALIDATED` epochs, whose mean is the stage's score. `ema`: 0, or the
    momentum of an exponential moving average of the weights (Polyak averaging, Keras' `use_ema`), which is then
    what is validated and kept. `autotune`: tf.data's autotuning of the training pipeline (off: an AUTOTUNE
    parallelism keeps its starting value, the pool's threads up to 16, and no autotuning thread runs, so none is
    joined when the fit ends).
    """

    epochs: int = 30
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    patience: int = 0  # 0: no early stopping
    validate_every: int = 1
    ema: float = 0.0
    autotune: bool = True
    augment: bool = True
    flip: bool = True
    translate: float = 0.1
    zoom: float = 0.1

    def __post_init__(self):
        check(self.epochs >= 1, f"`epochs` must be >= 1. Received: {self.epochs}")
        check(self.learning_rate > 0, f"`learning_rate` must be > 0. Received: {self.learning_rate}")
        check(self.weight_decay >= 0, f"`weight_decay` must be >= 0. Received: {self.weight_decay}")
        check(self.schedule in SCHEDULES, f"`schedule` must be one of {SCHEDULES}. Received: {self.schedule!r}")
        check(self.patience >= 0, f"`patience` must be >= 0. Received: {self.patience}")
        check(0.0 <= self.ema < 1.0, f"`ema` must be 0 (off) or in (0, 1). Received: {self.ema}")
        check(self.validate_every >= 1, f"`validate_every` must be >= 1. Received: {self.validate_every}")
        check(0.0 <= self.translate < 1.0, f"`translate` must be in [0, 1). Received: {self.translate}")
        check(0.0 <= self.zoom < 1.0, f"`zoom` must be in [0, 1). Received: {self.zoom}")


@dataclass(frozen=True)
class Classifier:
    """One breed classifier of a run: a row of `rundir.classifiers`."""

    dir: str  # its stage directory inside the run directory
    key: str  # its key in report.json
    label: str  # its label in plots and tables
    method: str  # the `method` that trains it ("pretrain": the article's pipeline)
    freeze: str | None = None  # the article's fine-tuned classifiers: the backbone blocks frozen


@dataclass(frozen=True)
class Method:
    """A semi-supervised method, as its module declares it; `ssl_keras.methods.METHODS` lists them.

    Attributes:
        name: its name in `--method` and `cfg.method`, and the key of its config (`cfg.<name>`).
        stage: `stage(run) -> dict`: trains its classifiers into the run directory (`ssl_keras.rundir.Run`)
            after the article's stages, skipping what a resumed run finished; returns their stage.json.
        classifiers: `classifiers(cfg) -> list[Classifier]`: the classifiers it trains, in training order.
        config: its config dataclass, whose defaults fill `cfg.<name>`; None for a method without knobs.
    """

    name: str
    stage: typing.Callable
    classifiers: typing.Callable
    config: type | None = None
