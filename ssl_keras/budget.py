"""The run's time: what each training stage costs, the whole-run estimate, and epochs that fit a budget.

Pure arithmetic, no TensorFlow: the Keras callback that times the steps (`train.Pace`),
the probe (`train.probe_rate`) and the run's use of both (`experiment.run_stages`) are
elsewhere, so this module is tested on made-up throughputs.

**The unit of work** is one *sample*: one photo at the run's image size through the
model forward and back. A forward pass alone (validation, prediction, BatchNorm
re-estimation) counts as 1/3 of a sample: the backward pass costs about two forward passes
(`benchmarks/bench_compute.py` counts FLOPs the same way). The heads are small next to
the backbone and are not counted. A machine's throughput is samples/s.

**What a fit costs.** Each fit of a run (one stage directory) costs, each epoch,
`steps x step_samples + epoch_samples`, with B the batch size, L, V, T the labelled,
validation and test photos, U and U_val the rotation task's unlabelled train and
validation photos, P the whole unlabelled pool, R = 50 batches of BatchNorm re-estimation,
a = (`data.pretext_image_size` / `data.image_size`)^2 (a photo's cost goes with its pixels) and
Bp the rotation task's batch (`data.pretext_batch_size`). A stage that validates only some epochs
(`StageConfig.validate_every`) costs its V / 3 times the share it validates:

| fit | steps an epoch | samples a step | samples each epoch besides |
|---|---|---|---|
| `baseline`, `finetune_<freeze>` | L / B | B (B / 3 with the whole backbone frozen) | V / 3 |
| `pretext` | U / Bp | 4 Bp a | 4 a U_val / 3 |
| `rotation_aux`, `rotation_aux_scratch` | L / B | B + 4 (B + Bu) | V / 3 + R B / 3 |
| `self_training/round<r>` | (L + P') / B | B, or 5 B with the rotation loss | V / 3 (+ R B / 3) |
| `fixmatch` | P / (ratio B) | B + s ratio B (strong) + ratio B / 3 (weak) | V / 3 + R B / 3 |
| `evaluate` | - | - | T / 3 per classifier |

s is `fixmatch.strong_share`, the share of strong views that go through the classifier. P' (the
pseudo-labelled photos) is not known before the teacher has labelled the pool; the estimate takes
all of P (capped at `per_class` a class), an upper bound.

**The estimate** (`Clock`). A finished fit shows the time it took. A running fit is timed
by its own steps once it is past its warm-up steps, then by its whole epochs (validation,
checkpoints and all) after its first; its rest is its remaining samples at its own rate. A
fit not yet started is its samples at the slowest rate measured so far among the fits that
train the whole network (a frozen backbone's forward-only steps left out; the rotation task, whose
step is 4x bigger, at `PRETEXT_PACE` = 1.25 times it), or, before any fit
is measured, the slowest probe's (`train.probe_rate`: the rotation model's step and the
classifier's, alone, so optimistic by the validation and checkpoint time of the real stages).
The slowest, not the most alike: stages differ in augmentation and data as much as in step
size (FixMatch's RandAugment runs at about half the rotation task's samples/s, speed.json), and
a fit planned too slow only leaves time that the next plan hands on, while one planned too
fast overruns the budget in the last stage, where nothing comes after to make it up. Each
fit's rate replaces the estimate as soon as it is measured, so the line grows more exact as
the run goes on. A fit's first epoch also decodes its photos, so its first line is slow.

**A budget** (`fit_budget`) scales the epochs of the fits not yet started by one factor,
so they keep the proportions the config gives, and fits them into the seconds left. The run
(`experiment.run_stages`) plans before each training stage with the rates known then: the
first plan from the probe, each later one from the fits measured so far; a stage's epochs
are fixed when it starts (its learning-rate schedule spans them). A time cap (`fit_cap`) keeps
the config's epochs while they fit and cuts the stage about to start last: the stages after it
are planned again once its rate is known.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

FORWARD = 1 / 3  # a forward pass, in training samples
# The rotation task's samples/s, until it is measured, over the slowest measured: its step carries 4 x its batch (one
# decoded, augmented photo gives four), the baseline's one batch. Over the 268 runs kept in results/ (their
# speed.json, `python research/rate_ratios.py results`) it ran at 1.30 to 3.4 times the baseline's rate (median
# 1.66; once 1.11), under a CPU quota (BENCHMARKS §6.5) at 1.4 to 1.57.
PRETEXT_PACE = 1.25
RECALIBRATION_STEPS = 50  # `train.recalibrate_batchnorm`'s default
PLAN_STAGES = ("baseline", "pretext", "finetune", "methods", "evaluate")  # the run's stages that have a cost here


@dataclasses.dataclass(frozen=True)
class Fit:
    """One fit of a run and its cost.

    Attributes:
        name: its stage directory (`baseline`, `finetune_1`, `self_training/round1`, ...), or `evaluate`.
        key: the config section whose `epochs` it trains for (`finetune`, `fixmatch.train`, ...); None for
            work whose size no epoch count sets (`evaluate`).
        epochs: epochs it trains for.
        steps: training steps an epoch.
        step_samples: samples (see the module docstring) of one step.
        epoch_samples: samples of the work each epoch besides its steps (validation, BatchNorm re-estimation).
        frozen: its steps are forward passes only (the whole backbone frozen): its rate says little of the others'.
        pace: its samples/s before it is measured, over the slowest measured (`PRETEXT_PACE` for the rotation task).
    """

    name: str
    key: str | None
    epochs: int
    steps: int
    step_samples: float
    epoch_samples: float
    frozen: bool = False
    pace: float = 1.0

    @property
    def epoch_cost(self) -> float:
        """Samples of one epoch, steps and the rest."""
        return self.steps * self.step_samples + self.epoch_samples

    @property
    def samples(self) -> float:
        """Samples of the whole fit."""
        return self.epochs * self.epoch_cost


def sizes(split: dict) -> dict[str, int]:
    """The counts a run's cost depends on, from its `split.json`."""
    return {"labelled": len(split["labelled"]), "val": len(split["val"]), "test": len(split["test"]),
            "unlabelled": len(split["unlabelled"]), "unlabelled_val": len(split["unlabelled_val"]),
            "classes": len(split["classes"])}


def validated_share(stage) -> float:
    """The share of a fit's epochs that it validates (`StageConfig.validate_every`), at its configured epochs."""
    from ssl_keras.config_base import validated

    return sum(validated(stage, e) for e in range(stage.epochs)) / stage.epochs


def fits(cfg, counts: dict[str, int], stages=PLAN_STAGES) -> list[Fit]:
    """The fits of `stages` (names of `experiment.PIPELINE`) of a run of `cfg` on a split of `counts`.

    Args:
        cfg: a `config.Config`.
        counts: as `sizes` returns them.
        stages: the stages that will run; others (export, report) cost nothing here.

    Returns:
        The fits in the order they run, with their costs (the module docstring's table).
    """
    from ssl_keras.methods import fixmatch
    from ssl_keras.rundir import classifiers

    b, pb, n_val = cfg.data.batch_size, cfg.data.pretext_batch, counts["val"]
    pool = counts["unlabelled"] + counts["unlabelled_val"]
    val, recal = FORWARD * n_val, FORWARD * RECALIBRATION_STEPS * b
    labelled_steps = math.ceil(counts["labelled"] / b)
    table = classifiers(cfg)
    out = []
    if "baseline" in stages:
        out.append(Fit("baseline", "baseline", cfg.baseline.epochs, labelled_steps, b,
                       val * validated_share(cfg.baseline)))
    if "pretext" in stages:
        area = (cfg.data.pretext_size / cfg.data.image_size) ** 2  # a photo's cost goes with its pixels
        out.append(Fit("pretext", "pretext", cfg.pretext.epochs, math.ceil(counts["unlabelled"] / pb),
                       4 * pb * area, FORWARD * 4 * counts["unlabelled_val"] * area * validated_share(cfg.pretext),
                       pace=PRETEXT_PACE))
    if "finetune" in stages:
        for c in table:
            if c.method == "pretrain" and c.freeze is not None:
                out.append(Fit(c.dir, "finetune", cfg.finetune.epochs, labelled_steps,
                               FORWARD * b if c.freeze == "all" else b, val * validated_share(cfg.finetune),
                               frozen=c.freeze == "all"))
    if "methods" in stages:
        for c in table:
            if c.method == "rotation_aux":
                mc = cfg.rotation_aux
                u = mc.unlabelled_batch_size or b
                out.append(Fit(c.dir, "rotation_aux.train", mc.train.epochs, labelled_steps, b + 4 * (b + u),
                               val + recal))
            elif c.method == "self_training":
                mc = cfg.self_training
                pseudo = min(pool, mc.per_class * counts["classes"]) if mc.per_class else pool
                rotation = mc.rotation_weight > 0
                for r in range(1, mc.rounds + 1):
                    out.append(Fit(f"self_training/round{r}", "self_training.train", mc.train.epochs,
                                   math.ceil((counts["labelled"] + pseudo) / b), 5 * b if rotation else b,
                                   val + (recal if rotation else 0)))
            elif c.method == "fixmatch":
                mc = cfg.fixmatch
                strong = fixmatch.strong_rows(mc, mc.ratio * b) + FORWARD * mc.ratio * b
                out.append(Fit(c.dir, "fixmatch.train", mc.train.epochs, math.ceil(pool / (mc.ratio * b)),
                               b + strong, val + FORWARD * mc.bn_batches * b))
    if "evaluate" in stages:
        out.append(Fit("evaluate", None, 1, 0, 0, FORWARD * counts["test"] * len(table)))
    return out


def fit_budget(fits_left: list[Fit], base: dict[str, int], seconds: float, rates: dict[str, float],
               grow: bool = True) -> dict[str, int]:
    """Epochs for the config sections of `fits_left` that fit their work into `seconds` at `rates`.

    Every section's epochs are its `base` epochs times one common factor (so the proportions
    the config gives hold), rounded to the nearest, at least 1; then, while they take longer
    than `seconds`, the section furthest above its share loses an epoch. With `grow=False` (a cap,
    `Config.max_minutes`) the factor is at most 1: the `base` epochs when they fit.

    Args:
        fits_left: the fits not yet started; those whose `key` is None (evaluate) are a fixed cost.
        base: config section -> the epochs the config gives it (the proportions).
        seconds: the time left for these fits.
        rates: fit name -> the samples/s it is expected to run at (`Clock.rate_for`).

    Returns:
        Config section -> epochs, for every `key` of `fits_left`. When even 1 epoch each does
        not fit, 1 epoch each (the shortest run there is).

    Raises:
        ValueError: for a fit without a positive rate, or a section missing in `base` (or not positive there).
    """
    bad = {f.name: rates.get(f.name) for f in fits_left if not (rates.get(f.name) or 0) > 0}
    if bad:
        raise ValueError(f"Every fit needs a rate > 0 samples/s. Received: {bad}")
    per_epoch: dict[str, float] = {}
    fixed = 0.0
    for f in fits_left:
        if f.key is None:
            fixed += f.samples / rates[f.name]
        else:
            per_epoch[f.key] = per_epoch.get(f.key, 0.0) + f.epoch_cost / rates[f.name]
    missing = sorted(k for k in per_epoch if base.get(k, 0) < 1)
    if missing:
        raise ValueError(f"Every config section needs its base epochs (>= 1) to keep the proportions. Missing or "
                         f"not positive: {missing}. Received: {base}")
    if not per_epoch:
        return {}
    available = seconds - fixed
    full = sum(base[k] * t for k, t in per_epoch.items())
    factor = max(available, 0.0) / full if full > 0 else 0.0
    if not grow:
        factor = min(factor, 1.0)
    epochs = {k: max(1, math.floor(base[k] * factor + 0.5)) for k in per_epoch}
    while sum(epochs[k] * t for k, t in per_epoch.items()) > available:
        above = [k for k in epochs if epochs[k] > 1]
        if not above:
            break  # 1 epoch each: the shortest run there is
        k = max(above, key=lambda k: epochs[k] / base[k])  # the first of equals: the earlier section
        epochs[k] -= 1
    return epochs


def fit_cap(fits_left: list[Fit], starting: set[str], base: dict[str, int], seconds: float,
            rates: dict[str, float]) -> dict[str, int]:
    """Epochs under a time cap (`Config.max_minutes`): the stage about to start is cut last.

    Its epochs are fixed now (its schedule spans them), while the fits after it are planned again once its rate is
    measured, and the fits not yet measured are priced at the slowest rate measured (pessimistic: the module
    docstring). So it is planned as if those after it could give up half their epochs (they count at half their
    cost), and they are then fitted into what it leaves; their next plan hands back what the pessimism took.

    Args:
        fits_left: the fits not yet started, those of the stage about to start first.
        starting: the names of the fits of the stage about to start.
        base, seconds, rates: as `fit_budget`'s (`grow=False`).

    Returns:
        Config section -> epochs, each at most its `base` epochs, for every `key` of `fits_left`.
    """
    later = {f.name for f in fits_left if f.name not in starting and f.key}
    first = fit_budget(fits_left, base, seconds, {n: r * (2 if n in later else 1) for n, r in rates.items()},
                       grow=False)
    now = [f for f in fits_left if f.name in starting and f.key]
    spent = sum(first[f.key] * f.epoch_cost / rates[f.name] for f in now)
    rest = fit_budget([f for f in fits_left if f.name not in starting], base, seconds - spent, rates, grow=False)
    return {**{f.key: first[f.key] for f in now}, **rest}


def planned(cfg, epochs: dict[str, int]):
    """`cfg` with these epochs (`{"fixmatch.train": 8}`: `fixmatch.train.epochs`), its budget and time cap
    cleared: what a planned run writes to config.json, which `--config` re-makes without planning again."""
    from ssl_keras import config

    changes: dict = {"budget_minutes": None, "max_minutes": None}
    for key, n in epochs.items():
        node = changes
        for part in key.split("."):
            node = node.setdefault(part, {})
        node["epochs"] = n
    return config.override(cfg, changes)


def duration(seconds: float) -> str:
    """`42 s`, `3.5 min`, `14 min`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 10 else f"{minutes:.0f} min"


class Clock:
    """The whole run's time as it goes: what each fit took or will take, printed as one `[plan]` line.

    Told by `train.Pace` when a fit starts, how fast it steps, and when it ends; prints the line
    the first time each fit is measured and whenever one ends. See the module docstring for how
    the estimate is made.

    Args:
        fits: the run's fits, in order (`fits`).
        root: the run directory (a fit is named by its stage directory relative to it).
        log: where the line goes.
        rate: samples/s before any fit is measured (a probe's), or None.
        extra: a note at the end of the line (e.g. "+ export").
        now: the clock (a test passes its own).
        start: when the run began, by `now` (default: now).
    """

    def __init__(self, fits: list[Fit], root: str = "", log=print, rate: float | None = None, extra: str = "",
                 now=time.monotonic, start: float | None = None):
        self.root, self.log, self.extra, self.now = root, log, extra, now
        self.start_time = now() if start is None else start
        self.fits = {f.name: f for f in fits}
        self.rate, self.rate_from = rate, ("probe" if rate else None)
        self.probes: dict[float, float] = {}  # samples a step -> samples/s of a probe of that step
        self.rates: dict[str, float] = {}  # name -> its own measured samples/s
        self.done: dict[str, float] = {}  # name -> fraction-of-epochs done (running fits)
        self.started: dict[str, float] = {}  # name -> when it started
        self.took: dict[str, float] = {}  # name -> seconds (finished fits)
        self.spent: dict[str, dict[str, float]] = {}  # name -> seconds by part besides the steps (`train.fit`)
        self.matmul: float | None = None  # this machine's float32 matmul rate in GFLOP/s, measured by the run
        self.flops: float | None = None  # training FLOPs of one sample (`speed.model_flops`)

    def name(self, stage_dir: str) -> str:
        """A fit's name from its stage directory."""
        return os.path.relpath(stage_dir, self.root) if self.root else stage_dir

    def set_fits(self, fits: list[Fit]) -> None:
        """New fits (epochs re-planned under a budget); fits that have started keep theirs."""
        self.fits = {f.name: self.fits[f.name] if f.name in self.started or f.name in self.took else f
                     for f in fits}

    # -- what the fits report ----------------------------------------------------------------------------------

    def start(self, name: str, epochs: int | None = None, steps: int | None = None, done: float = 0.0) -> None:
        """A fit started (or resumed after `done` epochs); `epochs` and `steps` as Keras was given them."""
        self.started[name] = self.now()
        self.done[name] = done
        if name in self.fits:
            f = self.fits[name]
            self.fits[name] = dataclasses.replace(f, epochs=epochs or f.epochs, steps=steps or f.steps)

    def measured(self, name: str, done: float, seconds_per_step: float | None = None,
                 seconds_per_epoch: float | None = None) -> None:
        """A running fit's speed: per step (after its warm-up) or per whole epoch; `done` epochs so far.

        The line is printed the first time a fit is measured.
        """
        f = self.fits.get(name)
        if f is None:
            return
        if seconds_per_epoch:
            rate = f.epoch_cost / seconds_per_epoch
        elif seconds_per_step and f.step_samples:
            rate = f.step_samples / seconds_per_step
        else:
            return
        first = name not in self.rates
        self.rates[name], self.done[name] = rate, done
        self.rate, self.rate_from = rate, name
        if first:
            self.log(self.line())

    def finish(self, name: str, seconds: float, epochs: int | None = None, quiet: bool = False) -> None:
        """A fit ended after `seconds` (and `epochs`, when it stopped early); prints the line unless `quiet`."""
        f = self.fits.get(name)
        if f is None:
            return
        if epochs:
            f = self.fits[name] = dataclasses.replace(f, epochs=epochs)
        self.took[name] = seconds
        self.started.pop(name, None)
        if name not in self.rates and seconds > 0 and f.steps and not quiet:
            self.rate, self.rate_from = f.samples / seconds, name  # a fit too short to be timed step by step
        if not quiet:
            self.log(self.line())

    # -- the estimate ------------------------------------------------------------------------------------------

    def rate_for(self, f: Fit) -> float | None:
        """The samples/s `f` is expected to run at: its own once measured; else the slowest rate measured among
        the fits that train the whole network (the module docstring says why the slowest) times `f.pace`; else
        the slowest probe's; else the latest rate. None before any rate is known."""
        if f.name in self.rates:
            return self.rates[f.name]
        if f.step_samples > 0:
            measured = [self.rates[g.name] for g in self.fits.values()
                        if g.name in self.rates and g.step_samples > 0 and not g.frozen]
            if measured:
                return min(measured) * f.pace
            if self.probes:
                return min(self.probes.values())
        return self.rate

    def estimate(self, name: str) -> float | None:
        """Seconds the fit takes in all (what it took, once finished); None before any rate is known."""
        if name in self.took:
            return self.took[name]
        f = self.fits[name]
        rate = self.rate_for(f)
        if not rate:
            return None
        if name in self.started:
            left = max(f.epochs - self.done.get(name, 0.0), 0.0) * f.epoch_cost / rate
            return self.now() - self.started[name] + left
        return f.samples / rate

    def seconds_left(self) -> float | None:
        """Seconds until every fit has ended; None before any rate is known."""
        left = 0.0
        for name in self.fits:
            if name in self.took:
                continue
            t = self.estimate(name)
            if t is None:
                return None
            left += t - (self.now() - self.started[name] if name in self.started else 0.0)
        return left

    def line(self) -> str:
        """`[plan] baseline 60 epochs took 50 s · pretext 12 epochs ≈ 9.1 min (running) · … ·
        whole run ≈ 14 min (this machine: 1,010 samples/s in pretext)`."""
        parts = []
        for name, f in self.fits.items():
            what = name if f.key is None else f"{name} {f.epochs} epoch{'s' if f.epochs != 1 else ''}"
            t = self.estimate(name)
            if name in self.took:
                parts.append(f"{what} took {duration(t)}")
            elif t is None:
                parts.append(f"{what} ≈ ?")
            else:
                parts.append(f"{what} ≈ {duration(t)}{' (running)' if name in self.started else ''}")
        left = self.seconds_left()
        if left is None:
            whole = "whole run ≈ ?"
        elif left == 0:
            whole = f"whole run {duration(self.now() - self.start_time)}"
        else:
            whole = f"whole run ≈ {duration(self.now() - self.start_time + left)}"
        if self.extra:
            whole += f" {self.extra}"
        machine = f"{self.rate:,.0f} samples/s in {self.rate_from}" if self.rate else ""
        if self.matmul:
            share = f" = {self.share(self.rate):.0%} of" if self.rate and self.flops else ";"
            machine += f"{share} its {self.matmul:,.0f} GFLOP/s float32 matmul"
        return "[plan] " + " · ".join(parts + [whole]) + (f" (this machine: {machine.strip()})" if machine else "")

    def share(self, rate: float) -> float | None:
        """The share of the matmul rate that training at `rate` samples/s reaches (None without both)."""
        return rate * self.flops / (self.matmul * 1e9) if self.matmul and self.flops else None

    def speed(self) -> dict:
        """Each finished fit's epochs, seconds, samples/s and share of the matmul rate, and the seconds it spent
        in BatchNorm re-estimation, validation and checkpoints (the rest: steps and data), for speed.json."""
        out = {}
        for name, seconds in self.took.items():
            f = self.fits.get(name)
            if f is None or seconds <= 0:
                continue
            rate = f.samples / seconds
            row = {"epochs": f.epochs if f.key else None, "seconds": round(seconds, 1), "samples": round(f.samples),
                   "samples_per_s": round(rate, 1)}
            if self.share(rate) is not None:
                row["of_matmul"] = float(f"{self.share(rate):.3g}")
            if name in self.spent:
                row["spent_s"] = {k: round(v, 1) for k, v in self.spent[name].items()}
            out[name] = row
        return out
