"""One breed classifier trained as a stage of a run, and the choice between a run's classifiers.

Every classifier stage (the baseline, the fine-tuned classifiers, each method of `ssl_keras.methods`)
builds its classifier (from scratch, the pretext backbone or a trained teacher), fits it with a function
of its own into its stage directory, and records its stage.json: `run_stage`. Stages receive the run
(`ssl_keras.rundir.Run`) and import nothing above this module, so the method modules can use it. The
choice between classifiers is by `val_score`.
"""

from __future__ import annotations

import math
import os
import time


def build(run, init: str, freeze: str, *, pretext=None, teacher_path=None):
    """A breed classifier, initialised as `init` says ("scratch", "pretext", "teacher"), blocks frozen by `freeze`.

    Returns:
        (model, number of backbone weight tensors copied).
    """
    from ssl_keras import models, transfer

    cfg = run.cfg
    model = models.build_classifier(cfg.model, cfg.data.image_size, len(run.classes),
                                    frozen_backbone=(freeze == "all"))
    copied = 0
    if init == "pretext":
        # the fully frozen comparison always takes the whole backbone
        copied = transfer.copy_backbone(pretext, model, 0 if freeze == "all" else cfg.transfer_blocks)
    elif init == "teacher":
        copied = transfer.copy_weights(models.load(teacher_path), model)
    if init != "scratch":
        transfer.set_frozen(model, freeze)
    return model, copied


def run_stage(run, name: str, init: str, freeze: str, fit, *, pretext=None, teacher=None, **extra) -> dict:
    """Trains one breed classifier into `run/name` with `fit(model, stage_dir) -> history`; returns its stage.json.

    Skipped (and its stage.json returned) when a resumed run has finished it.

    Args:
        run: the run.
        name: its stage directory, relative to the run directory.
        init, freeze: as `build` takes them.
        fit: trains the model, keeping its best and final epochs in the stage directory (`train.fit`).
        pretext: the rotation model whose backbone starts it (`init="pretext"`).
        teacher: the stage directory of the classifier it starts from (`init="teacher"`).
        **extra: more values for its stage.json.
    """
    from ssl_keras import distribute, plots, train, transfer

    if (done := run.stage_done(name)) is not None:
        run.log(f"[{name}] already finished; skipping (--resume).")
        return done
    start = time.time()
    strategy = distribute.strategy_for(run.cfg.strategy)  # the one main() made (strategy_for keeps it)
    with strategy.scope():  # build, compile and fit under the strategy
        model, copied = build(run, init, freeze, pretext=pretext,
                              teacher_path=run.path(teacher, "best.keras") if teacher else None)
        params = transfer.count_params(model)
        run.log(f"\n[{name}] {len(run.split['labelled'])} labelled photos; start: {init}"
                f"{f' ({teacher})' if teacher else ''}; backbone weights copied: {copied}; freeze={freeze}; "
                f"trainable params {params['trainable']:,}, frozen {params['non_trainable']:,}")
        hist = fit(model, run.path(name))
    best = train.best_epoch(hist)
    plots.history(hist, name, run.path(name, "curves.png"), best_epoch=best)
    return run.finish_stage(name, start, epochs=len(hist.get("loss", [])),
                            best_val_accuracy=hist["val_accuracy"][best] if best is not None else 0.0,
                            best_epoch=best,
                            val_accuracy_last=train.last_epochs_mean(hist), weights_copied=copied, init=init,
                            teacher=teacher, freeze=freeze, **params, **extra)


def fit_labelled(run, stage):
    """`fit(model, stage_dir)` for a classifier trained on the labelled photos alone, as `stage` says."""
    from ssl_keras import train

    def fit(model, stage_dir):
        steps = math.ceil(len(run.split["labelled"]) / run.cfg.data.batch_size)
        return train.fit(model, run.dataset("labelled", training=True, stage=stage, repeat=True),
                         run.dataset("val"), stage, stage_dir, steps_per_epoch=steps, resume=run.resume,
                         verbose=run.verbose, log=run.log, clock=run.clock)

    return fit


def pretext_model(run):
    """The run's rotation model (its best epoch)."""
    from ssl_keras import models

    path = run.path("pretext", "best.keras")
    if not os.path.exists(path):
        raise ValueError(f"No pretext model at {path!r}. Run the `pretext` stage first.")
    return models.load(path)


def pool_photos(run):
    """Endless batches of the unlabelled pool's photos as they are (no augmentation): what BatchNorm's moving
    statistics are re-estimated on before a method's classifier is validated."""
    from ssl_keras import data

    d = run.cfg.data
    return data.unlabelled_dataset(run.source, run.pool, d.image_size, d.batch_size, seed=run.cfg.seed + 1)


def method_freeze(cfg) -> str:
    """Blocks frozen when a method starts from trained weights: as fine-tuning does (nothing, for `all`)."""
    return "none" if cfg.freeze == "all" else cfg.freeze


# --- the choice between classifiers ------------------------------------------------------------------------------


def val_score(info: dict) -> float:
    """What picks between classifiers: the mean validation accuracy of a stage's last epochs.

    The best epoch's accuracy is the largest of many noisy values on a few hundred photos,
    and the more epochs a stage has, the more it overstates the model; the last epochs'
    mean, after the cosine schedule has settled, does not.
    """
    return info.get("val_accuracy_last", info.get("best_val_accuracy", 0.0))


def trained_before(run, before: str | None = None, extra=()) -> list[str]:
    """Stage directories of the trained classifiers listed before `before` in `run.classifiers`, and `extra`."""
    names = []
    for entry in run.classifiers:
        if entry.dir == before:
            break
        names.append(entry.dir)
    return [n for n in [*names, *extra] if run.stage_info(n) and os.path.exists(run.path(n, "best.keras"))]


def best_so_far(run, before: str | None = None, extra=()) -> str | None:
    """The trained classifier (of `trained_before`) that choices take: the latest one validation cannot tell from
    the top scorer.

    The top scorer has the highest `val_score`. With few validation photos that is often noise (one photo of 20 is
    5 points), so every classifier whose 95 % Wilson interval on the run's validation photos overlaps the top
    scorer's is as good as far as validation can tell, and the latest of them in `classifiers(cfg)` order wins:
    later classifiers build on earlier ones (FixMatch starts from the best before it), and on the benchmark's
    1,500 validation photos the later methods scored higher (README). With many validation photos this is the
    top scorer, up to differences within noise.
    """
    from ssl_keras import evaluate

    names = trained_before(run, before, extra)
    if not names:
        return None
    n = max(1, len(run.split["val"]))
    interval = {name: evaluate.wilson_interval(round(val_score(run.stage_info(name)) * n), n) for name in names}
    top = interval[top_scorer(run, before, extra)]
    return [name for name in names if evaluate.overlap(interval[name], top)][-1]


def top_scorer(run, before: str | None = None, extra=()) -> str | None:
    """The trained classifier (of `trained_before`) with the highest `val_score`; ties go to the earlier one."""
    scored = [(val_score(run.stage_info(n)), -i, n) for i, n in enumerate(trained_before(run, before, extra))]
    return max(scored)[2] if scored else None
