"""The schema of a run: every knob as a frozen dataclass, checked in `__post_init__`; overrides.

No TensorFlow here: the config is resolved and checked before anything heavy is
imported. A run resolves its config as preset (`ssl_keras.presets`) -> optional
JSON file -> `--set` -> flags, and writes the result to `<run_dir>/config.json`.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field

from ssl_keras import methods
from ssl_keras.config_base import STRATEGIES, StageConfig
from ssl_keras.config_base import check as _check

FREEZE_CHOICES = ("all", "none")
# The article's pipeline, and the semi-supervised methods that run after it (the table of `ssl_keras.methods`).
METHODS = ("pretrain", *(m.name for m in methods.METHODS))
POOLING_CHOICES = ("flatten", "avg")


@dataclass(frozen=True)
class DataConfig:
    """Where the photos come from and how they are split.

    `data_dir=None` reads the TFDS data set `tfds_name` (downloaded on first use).
    """

    data_dir: str | None = None
    tfds_name: str = "stanford_dogs"
    unlabelled_dirs: tuple[str, ...] = ()  # your own photos: every photo under these folders is unlabelled
    val_dir: str | None = None  # with unlabelled_dirs: an ImageFolder of validation photos (else val_fraction)
    test_dir: str | None = None  # with unlabelled_dirs: an ImageFolder of test photos (else test_fraction)
    val_fraction: float = 0.2  # with unlabelled_dirs and no val_dir: per class, at least one photo
    classes: tuple[str, ...] = ()
    num_classes: int = 10
    labels_per_class: int = 57  # 0: all (every labelled photo outside validation and test trains)
    val_per_class: int = 20
    test_fraction: float = 0.2
    max_test_per_class: int = 0  # 0: every test photo
    max_unlabelled: int = 0  # 0: the whole unlabelled pool
    image_size: int = 64
    pretext_image_size: int = 0  # the rotation task's photo size; 0: image_size (the backbone's weights fit both)
    batch_size: int = 64
    pretext_batch_size: int = 0  # unlabelled photos a step of the rotation task (x4 samples); 0: batch_size

    @property
    def pretext_size(self) -> int:
        """The rotation task's photo size in pixels."""
        return self.pretext_image_size or self.image_size

    @property
    def pretext_batch(self) -> int:
        """The rotation task's photos a step (each makes 4 samples)."""
        return self.pretext_batch_size or self.batch_size

    def __post_init__(self):
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "unlabelled_dirs", tuple(self.unlabelled_dirs))
        _check(0.0 < self.val_fraction < 1.0, f"`val_fraction` must be in (0, 1). Received: {self.val_fraction}")
        _check(self.num_classes >= 2, f"`num_classes` must be >= 2. Received: {self.num_classes}")
        _check(
            not self.classes or len(self.classes) >= 2,
            f"`classes` must name at least 2 classes. Received: {list(self.classes)}",
        )
        _check(
            self.labels_per_class >= 0,
            f"`labels_per_class` must be >= 1, or 0 for all. Received: {self.labels_per_class}",
        )
        _check(self.val_per_class >= 1, f"`val_per_class` must be >= 1. Received: {self.val_per_class}")
        _check(
            0.0 < self.test_fraction < 1.0,
            f"`test_fraction` must be in (0, 1). Received: {self.test_fraction}",
        )
        _check(self.max_test_per_class >= 0, f"`max_test_per_class` must be >= 0. Received: {self.max_test_per_class}")
        _check(self.max_unlabelled >= 0, f"`max_unlabelled` must be >= 0. Received: {self.max_unlabelled}")
        _check(16 <= self.image_size <= 512, f"`image_size` must be in [16, 512]. Received: {self.image_size}")
        _check(self.pretext_image_size == 0 or 16 <= self.pretext_image_size <= 512,
               f"`pretext_image_size` must be 0 (image_size) or in [16, 512]. Received: {self.pretext_image_size}")
        _check(self.batch_size >= 1, f"`batch_size` must be >= 1. Received: {self.batch_size}")
        _check(self.pretext_batch_size >= 0,
               f"`pretext_batch_size` must be 0 (batch_size) or >= 1. Received: {self.pretext_batch_size}")


@dataclass(frozen=True)
class ModelConfig:
    """The backbone (conv -> BN -> ReLU blocks, each ending in a 2x2 max-pool) and the heads."""

    filters: tuple[int, ...] = (16, 32, 64, 128)
    convs_per_block: int = 1
    pooling: str = "avg"
    dense_units: int = 128
    dropout: float = 0.5
    bn_momentum: float = 0.9  # Keras' 0.99 lags far behind with ~10 labelled batches an epoch
    pretext_blocks: int = 0  # extra conv blocks in the rotation head only; transfer leaves them behind

    def __post_init__(self):
        object.__setattr__(self, "filters", tuple(self.filters))
        _check(
            len(self.filters) >= 1 and all(f >= 1 for f in self.filters),
            f"`filters` must be a non-empty list of positive ints. Received: {list(self.filters)}",
        )
        _check(self.convs_per_block >= 1, f"`convs_per_block` must be >= 1. Received: {self.convs_per_block}")
        _check(
            self.pooling in POOLING_CHOICES,
            f"`pooling` must be one of {POOLING_CHOICES}. Received: {self.pooling!r}",
        )
        _check(self.dense_units >= 1, f"`dense_units` must be >= 1. Received: {self.dense_units}")
        _check(0.0 <= self.dropout < 1.0, f"`dropout` must be in [0, 1). Received: {self.dropout}")
        _check(0.0 < self.bn_momentum < 1.0, f"`bn_momentum` must be in (0, 1). Received: {self.bn_momentum}")
        _check(self.pretext_blocks >= 0, f"`pretext_blocks` must be >= 0. Received: {self.pretext_blocks}")


def _with_method_configs(cls):
    """Adds to the class `cls` a field after `method` for each method with a config (`Method.config`),
    named as the method and defaulting to its config's defaults: `cfg.fixmatch` is a `FixMatchConfig`."""
    annotations = {}
    for name, annotation in cls.__annotations__.items():
        annotations[name] = annotation
        if name == "method":
            for m in methods.METHODS:
                _check(m.name not in cls.__annotations__ and m.name != "pretrain",
                       f"A method cannot be named as a config key or `pretrain`. Received: {m.name!r}")
                if m.config is not None:
                    annotations[m.name] = m.config
                    setattr(cls, m.name, field(default_factory=m.config))
    cls.__annotations__ = annotations
    return cls


@dataclass(frozen=True)
@_with_method_configs
class Config:
    """One resolved run. `freeze` is "all", "none" or the number of leading blocks to freeze."""

    preset: str = "default"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    baseline: StageConfig = field(default_factory=StageConfig)
    pretext: StageConfig = field(default_factory=lambda: StageConfig(epochs=10, patience=0))
    finetune: StageConfig = field(default_factory=StageConfig)
    freeze: str = "1"  # RotNet: early blocks transfer best; later ones are retrained
    transfer_blocks: int = 0  # blocks whose pretext weights are copied (0: all); later ones start fresh
    pretext_from: str | None = None  # a finished rotation model (.keras or run directory) to reuse, not train
    also_frozen: bool = True  # the default run also trains an all-frozen classifier, for comparison
    # where the fine-tuned classifier starts: "pretext" (the rotation backbone, a fresh head) or "frozen" (the
    # all-frozen classifier as trained: its head first fitted on the fixed features, then all layers; LP-FT)
    finetune_from: str = "pretext"
    method: tuple[str, ...] = ("pretrain",)  # pretrain: the article's stages only; others run after them
    # then the config of each method of `ssl_keras.methods` that has one, as `cfg.<method>` (`_with_method_configs`)
    mixed_precision: bool = False
    strategy: str = "default"
    top_k: int = 5
    # Minutes for the training stages and evaluate (export not counted): each stage's epochs are scaled to fit,
    # keeping their proportions (`ssl_keras.budget`); the run's config.json holds the epochs and None here.
    budget_minutes: float | None = None
    # At most these minutes for the training stages and evaluate on this machine (export not counted), without a
    # budget: once a stage's speed is measured, the stages not yet begun lose epochs in the config's proportions
    # when the run would take longer; they never gain. A run that shrinks writes its epochs (and None here) to
    # config.json, as a budgeted run does; one that fits keeps its config.json as given.
    max_minutes: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "method", tuple(self.method))
        _check(self.method and set(self.method) <= set(METHODS) and len(set(self.method)) == len(self.method),
               f"`method` must list distinct names among {METHODS}. Received: {list(self.method)}")
        _check(
            self.freeze in FREEZE_CHOICES or (self.freeze.isdigit() and int(self.freeze) >= 1),
            f"`freeze` must be 'all', 'none' or a number of blocks >= 1. Received: {self.freeze!r}",
        )
        if self.freeze.isdigit():
            _check(
                int(self.freeze) <= len(self.model.filters),
                f"`freeze` must be at most the number of blocks ({len(self.model.filters)}). "
                f"Received: {self.freeze}",
            )
        _check(
            0 <= self.transfer_blocks <= len(self.model.filters),
            f"`transfer_blocks` must be in [0, {len(self.model.filters)}] (0: every block). "
            f"Received: {self.transfer_blocks}",
        )
        if self.transfer_blocks:
            named = {"all": len(self.model.filters), "none": 0}
            frozen = named[self.freeze] if self.freeze in named else int(self.freeze)
            _check(
                frozen <= self.transfer_blocks,
                f"`freeze` ({self.freeze}) would freeze blocks that `transfer_blocks` ({self.transfer_blocks}) "
                "leaves at their random initial values. Freeze at most the transferred blocks.",
            )
        _check(self.finetune_from in ("pretext", "frozen"),
               f"`finetune_from` must be 'pretext' or 'frozen'. Received: {self.finetune_from!r}")
        _check(self.finetune_from == "pretext" or (self.also_frozen and self.freeze != "all"),
               "`finetune_from='frozen'` starts the fine-tuned classifier from the all-frozen one: it needs "
               f"`also_frozen=true` and `freeze` other than 'all'. Received: also_frozen={self.also_frozen}, "
               f"freeze={self.freeze!r}")
        _check(self.strategy in STRATEGIES, f"`strategy` must be one of {STRATEGIES}. Received: {self.strategy!r}")
        _check(self.top_k >= 1, f"`top_k` must be >= 1. Received: {self.top_k}")
        _check(self.budget_minutes is None or self.budget_minutes > 0,
               f"`budget_minutes` must be > 0 (or None: epochs as given). Received: {self.budget_minutes}")
        _check(self.max_minutes is None or self.max_minutes > 0,
               f"`max_minutes` must be > 0 (or None: no cap). Received: {self.max_minutes}")


def to_dict(cfg: Config) -> dict:
    """A JSON-ready dict of the config (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _coerce(value, tp, where):
    """Checks `value` against the annotation `tp` and converts lists to tuples."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"`{where}` must be a mapping. Received: {value!r}")
        return _build(tp, value, where + ".")
    if origin is tuple:
        if isinstance(value, str) and args[0] is str:  # `--set method=a,b`
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"`{where}` must be a list. Received: {value!r}")
        return tuple(_coerce(v, args[0], where) for v in value)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, int) and not isinstance(value, bool) and where.endswith("freeze"):
        return str(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ValueError(f"`{where}` must be of type {tp.__name__}. Received: {value!r}")
    return value


def _build(cls, values: dict, where: str = ""):
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ValueError(
            f"Unknown config key(s) {', '.join(where + k for k in unknown)}. Expected one of {sorted(hints)}."
        )
    return cls(**{k: _coerce(v, hints[k], where + k) for k, v in values.items()})


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def override(cfg: Config, values: dict) -> Config:
    """Returns `cfg` with the (nested) `values` applied; unknown keys and wrong types raise ValueError."""
    if not isinstance(values, dict):
        raise ValueError(f"Config overrides must be a JSON object such as {{\"finetune\": {{\"epochs\": 5}}}}. "
                         f"Received a {type(values).__name__}: {str(values)[:80]}")
    return _build(Config, _merge(to_dict(cfg), values))


def parse_assignment(text: str) -> dict:
    """Turns `"finetune.epochs=5"` into `{"finetune": {"epochs": 5}}` (the value is parsed as JSON when it can be)."""
    if "=" not in text:
        raise ValueError(f"`--set` expects KEY=VALUE, e.g. finetune.epochs=5. Received: {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    out: dict = value
    for part in reversed(key.strip().split(".")):
        out = {part: out}
    return out


def from_dict(values: dict) -> Config:
    """Builds a Config from a dict such as `config.json` holds."""
    if not isinstance(values, dict):
        raise ValueError(f"A config must be a JSON object. Received a {type(values).__name__}.")
    return _build(Config, values)
