"""The experiment as a library: the stages of a run, each a function of its `Run` (`ssl_keras.rundir`).

    from ssl_keras import experiment, presets, rundir
    run = rundir.Run(presets.quick(), "models/my-run")
    experiment.prepare(run.cfg)
    experiment.run_stages(run, experiment.STAGES)

The command line (`ssl_keras.run`) and every benchmark call these functions, so a
benchmark makes exactly the splits and models that `python -m ssl_keras.run` makes.
`STAGES` is the one list of the stages, in pipeline order: the article's (baseline,
pretext, finetune), the methods that use the unlabelled photos again
(`ssl_keras.methods`), evaluate, export and report. `predict` is not a stage.
"""

from __future__ import annotations

import math
import os
import time

from ssl_keras import classifier_stage, methods
from ssl_keras.rundir import Run, classifiers, copy_stage, model_path, read_json, write_json

# --- the article's stages ----------------------------------------------------------------------------------------


def baseline_stage(run: Run) -> dict:
    """A classifier trained from scratch on the labelled photos."""
    return classifier_stage.run_stage(run, "baseline", "scratch", "none",
                                      classifier_stage.fit_labelled(run, run.cfg.baseline))


def _accelerator() -> str | None:
    """"/GPU:0" when TensorFlow sees a GPU (the rotations then run there), else None."""
    import tensorflow as tf

    return "/GPU:0" if tf.config.list_physical_devices("GPU") else None


def pretext_stage(run: Run) -> dict:
    """The same backbone with a 4-way head, trained to predict the rotation of unlabelled photos."""
    from ssl_keras import data, distribute, models, plots, rotations, train

    if (done := run.stage_done("pretext")) is not None:
        run.log("[pretext] already finished; skipping (--resume).")
        return done
    if run.cfg.pretext_from:
        return _reuse_pretext(run, run.cfg.pretext_from)
    cfg, start = run.cfg, time.time()
    strategy = distribute.strategy_for(cfg.strategy)
    d = cfg.data
    keys, val_keys = run.split["unlabelled"], run.split["unlabelled_val"]
    # Under mirrored / multi-worker the strategy places the batches on its devices itself.
    train_ds = data.pretext_dataset(run.source, keys, d.pretext_size, d.pretext_batch, training=True,
                                    stage=cfg.pretext, seed=cfg.seed,
                                    device=_accelerator() if cfg.strategy == "default" else None)
    val_ds = data.pretext_dataset(run.source, val_keys, d.pretext_size, d.pretext_batch)
    os.makedirs(run.path("pretext"), exist_ok=True)
    example, labels = next(iter(val_ds))
    b = example.shape[0] // 4
    plots.rotations(example.numpy()[::b][:4], labels.numpy()[::b][:4], rotations.ANGLES,
                    run.path("pretext", "rotations.png"))
    run.log(f"\n[pretext] {len(keys)} unlabelled photos -> {4 * len(keys)} rotated samples an epoch; "
            f"{4 * len(val_keys)} for validation")
    with strategy.scope():
        model = models.build_rotation_model(cfg.model, d.pretext_size)
        hist = train.fit(model, train_ds.repeat(), val_ds, cfg.pretext, run.path("pretext"),
                         steps_per_epoch=math.ceil(len(keys) / d.pretext_batch), resume=run.resume,
                         verbose=run.verbose, log=run.log, clock=run.clock)
    best = train.best_epoch(hist)
    plots.history(hist, "pretext (rotation)", run.path("pretext", "curves.png"), best_epoch=best)
    return run.finish_stage("pretext", start, epochs=len(hist.get("loss", [])),
                            best_val_accuracy=hist["val_accuracy"][best] if best is not None else 0.0,
                            best_epoch=best,
                            val_accuracy_last=train.last_epochs_mean(hist), samples_per_epoch=4 * len(keys))


def pretext_file(source: str) -> str:
    """The rotation model `--pretext-from` names: a .keras file, or a run directory's `pretext/best.keras`."""
    path = os.path.join(source, "pretext", "best.keras") if os.path.isdir(source) else source
    if not os.path.isfile(path):
        raise ValueError(f"--pretext-from {source!r} is neither a .keras rotation model nor a run directory with a "
                         f"finished pretext stage (no {path!r}).")
    return path


def check_pretext_model(cfg, source: str) -> None:
    """ValueError naming what differs unless `source` holds a rotation model this config's classifiers can use."""
    from ssl_keras import models

    path = pretext_file(source)
    try:
        model = models.load(path)
    except Exception as e:  # Keras raises many types for a file that is not a model
        raise ValueError(f"--pretext-from {source!r}: {path!r} is not a Keras model this version loads ({e}).") \
            from None
    names = [layer.name for layer in model.layers]
    if "backbone" not in names or "rotation" not in names or model.get_layer("rotation").units != 4:
        raise ValueError(f"--pretext-from {source!r}: {path!r} is not a rotation model (expected a `backbone` and a "
                         f"4-way `rotation` output; it has layers {names}).")
    theirs, ours = model.get_layer("backbone"), models.build_backbone(
        cfg.model.filters, cfg.model.convs_per_block, cfg.data.pretext_size, cfg.model.bn_momentum)
    size = theirs.get_layer("resize").get_config()["height"]
    if size != cfg.data.pretext_size:
        raise ValueError(f"--pretext-from {source!r} was trained at image size {size} px; this run's rotation task "
                         f"is at {cfg.data.pretext_size} px. Use --set data.pretext_image_size={size} or another "
                         "rotation model.")
    shapes = lambda m: [(w.path.split("/", 1)[-1], tuple(w.shape)) for w in m.weights]  # noqa: E731
    if shapes(theirs) != shapes(ours):
        diff = [f"{a} != {b}" for a, b in zip(shapes(theirs), shapes(ours)) if a != b] or \
            [f"{len(theirs.weights)} weight tensors != {len(ours.weights)}"]
        raise ValueError(f"--pretext-from {source!r} has another backbone than this run's model config "
                         f"(filters {list(cfg.model.filters)}, {cfg.model.convs_per_block} conv(s) a block): "
                         f"{'; '.join(diff[:3])}.")


def _reuse_pretext(run: Run, source: str) -> dict:
    """The pretext stage from a finished rotation model (`--pretext-from`): copied, not trained."""
    from ssl_keras import files

    start, path = time.time(), pretext_file(source)
    if os.path.isdir(source):
        copy_stage(source, run, "pretext")
        info = run.stage_info("pretext")
    else:
        os.makedirs(run.path("pretext"), exist_ok=True)
        files.copy(path, run.path("pretext", "best.keras"))
        info = {"epochs": 0}
    info.update(pretext_from=os.path.abspath(path), copy_s=round(time.time() - start, 1))
    write_json(run.path("pretext", "stage.json"), info)
    run.log(f"\n[pretext] reused the rotation model {path} (--pretext-from); not trained here")
    return info


def finetune_stage(run: Run) -> dict:
    """Breed classifiers on the pretext backbone: fully frozen (for comparison) and as configured, with a fresh
    head, or (`finetune_from="frozen"`) starting from the frozen one as trained."""
    model = classifier_stage.pretext_model(run)
    out, frozen = {}, None
    for entry in classifiers(run.cfg):
        if entry.freeze is not None:
            # LP-FT (`finetune_from="frozen"`): the fine-tuned classifier starts from the frozen one as trained
            teacher = frozen if run.cfg.finetune_from == "frozen" and entry.freeze != "all" else None
            out[entry.dir] = classifier_stage.run_stage(run, entry.dir, "teacher" if teacher else "pretext",
                                                        entry.freeze,
                                                        classifier_stage.fit_labelled(run, run.cfg.finetune),
                                                        pretext=model, teacher=teacher)
            frozen = entry.dir if entry.freeze == "all" else frozen
    return out


# --- the semi-supervised methods ---------------------------------------------------------------------------------


def methods_stage(run: Run) -> dict:
    """Every method of `cfg.method` after the article's stages, in the order of the table `methods.METHODS`."""
    return {m.name: m.stage(run) for m in methods.METHODS if m.name in run.cfg.method}


# --- scoring, predict, export, report ----------------------------------------------------------------------------


def evaluate_stage(run: Run) -> dict:
    """Test metrics of every classifier of the run, from its best checkpoint."""

    from ssl_keras import evaluate, models, plots

    test = run.dataset("test")
    out = {}
    for entry in classifiers(run.cfg):
        path = run.path(entry.dir, "best.keras")
        if not os.path.exists(path):
            continue
        probs, labels = evaluate.predict_dataset(models.load(path), test)
        m = evaluate.metrics(probs, labels, run.classes)
        write_json(run.path(entry.dir, "test_metrics.json"), m)
        plots.confusion(m["confusion"], run.classes, run.path(entry.dir, "confusion.png"),
                        f"{entry.label}: confusion (test)")
        run.log(f"[evaluate] {entry.dir}: test accuracy {m['accuracy']:.3f} on {m['n']} photos")
        out[entry.dir] = m
    if not out:
        raise ValueError(f"No trained classifier in {run.dir!r}. Run `baseline` or `finetune` first.")
    return out


def photo_probabilities(model, path):
    """(C,) probabilities of the photo file at `path`: the project's decode, then the model (which resizes).

    Raises:
        ValueError: naming the file, when it is not a photo.
    """
    from ssl_keras import evaluate, preprocessing

    return evaluate.predict_image(model, preprocessing.read_photo(path))


def predict(run: Run, images, model_arg=None, top_k=None, out=print, err=print) -> int:
    """Prints the top-k breeds of each photo; a photo that cannot be read is reported, not fatal.

    Returns:
        0 when every photo was read, else 1.
    """
    from ssl_keras import evaluate, models

    if not images:
        raise ValueError("`predict` needs at least one photo: python -m ssl_keras.run predict PHOTO.jpg")
    path = model_path(run, model_arg)
    model = models.load(path)
    out(f"Model: {path}")
    failed = 0
    for image_path in images:
        try:
            probs = photo_probabilities(model, image_path)
        except ValueError as e:
            err(f"\n{e}")
            failed += 1
            continue
        out(f"\n{image_path}")
        for name, p in evaluate.top_k(probs, run.classes, top_k or run.cfg.top_k):
            out(f"  {p * 100:6.2f}%  {'#' * round(p * 30):30s} {name}")
    return 1 if failed else 0


# Test photos the export runs through both TF.js models (one photo at a time in Node, ~20 ms each on the EPYC):
# every test photo of a large split would add minutes to the first command for the same agreement check.
EXPORT_CHECK_PHOTOS = 1000


def export_check_photos(items: list, most: int = EXPORT_CHECK_PHOTOS) -> list:
    """At most `most` of the test items, at an even stride: the split lists them by class, so every class stays."""
    return items[::max(1, math.ceil(len(items) / most))]


def export_stage(run: Run, model_arg=None, export_dir="export", model_name="dog_breeds", top_k=None) -> dict:
    """SavedModel (a new version), TF.js float32/float16 and the web page under `export_dir`.

    The TF.js models are measured on the run's test photos (at most `EXPORT_CHECK_PHOTOS`); the returned dict,
    which names the run and the model file, is written to `export_dir/export.json` and `run/export.json`.
    """
    from ssl_keras import export, models

    path = model_path(run, model_arg)
    run.log(f"\n[export] {path} -> {export_dir}/")
    test = export_check_photos(run.split["test"])
    info = export.export_all(models.load(path), run.classes, export_dir, model_name=model_name,
                             top_k=top_k or run.cfg.top_k, test_items=test, source=run.source,
                             provenance={"run_dir": os.path.abspath(run.dir), "model": os.path.abspath(path)})
    write_json(run.path("export.json"), info)
    return info


def report_stage(run: Run) -> dict:
    """report.json, the comparison and example plots, and the summary table (`ssl_keras.report`)."""
    from ssl_keras import report

    return report.report(run)


# --- running stages ----------------------------------------------------------------------------------------------


def check_inputs(cfg) -> None:
    """Your own photos' folders and `--pretext-from`, checked before anything is written or trained.

    Raises:
        ValueError: naming the folder, class or model at fault and what was expected.
    """
    d = cfg.data
    if d.unlabelled_dirs:
        from ssl_keras import sources, split

        records = sources.open_source(d).records()
        split.check_folder_classes(records, split.own_classes(records, d.classes))
    if cfg.pretext_from:
        check_pretext_model(cfg, cfg.pretext_from)


def prepare(cfg) -> None:
    """What a process does once before its first stage: the seed, the precision policy, the strategy."""
    import keras

    from ssl_keras import distribute

    distribute.strategy_for(cfg.strategy)  # multi-worker must exist before any TensorFlow op
    keras.utils.set_random_seed(cfg.seed)
    if cfg.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")


# The stages, in pipeline order (`python -m ssl_keras.run` runs them all): the one list of their names.
STAGES = {
    "baseline": baseline_stage,
    "pretext": pretext_stage,
    "finetune": finetune_stage,
    "methods": methods_stage,
    "evaluate": evaluate_stage,
    "export": export_stage,
    "report": report_stage,
}
TRAINING = ("baseline", "pretext", "finetune", "methods")  # skipped when finished; their time is in stage.json


def _start_clock(run: Run, stages) -> dict | None:
    """Gives `run` the clock of `stages` (None without training stages); a resumed run's finished fits show
    the time they took. Under `cfg.budget_minutes`, times a probe of the training step (the clock's rate until
    a fit is measured) and returns the budget's plan (what `_fit_budget` keeps in plan.json), else None."""
    import keras

    from ssl_keras import budget, models, speed, train

    run.clock = None
    if not any(s in TRAINING for s in stages):
        return None
    sizes = budget.sizes(run.split)
    fits = budget.fits(run.cfg, sizes, stages)
    run.clock = budget.Clock(fits, root=run.dir, log=run.log, extra="+ export" if "export" in stages else "",
                             start=run.started)
    for f in fits:
        if run.resume and (info := run.stage_info(f.name)):
            run.clock.finish(f.name, info.get("wall_time_s", 0.0), quiet=True)
    d = run.cfg.data
    run.clock.matmul = speed.run_matmul_gflops()
    run.clock.flops = speed.model_flops(models.build_rotation_model(run.cfg.model, d.image_size))["train"]
    keras.utils.set_random_seed(run.cfg.seed)  # the model built here leaves the run's random draws as they were
    config_epochs = {f.key: f.epochs for f in fits if f.key}
    if not run.cfg.budget_minutes:  # a cap plans from measured fits only: no probe's seconds in a run that fits
        return {"max_minutes": run.cfg.max_minutes, "sizes": sizes, "config_epochs": config_epochs,
                "plans": []} if run.cfg.max_minutes else None
    rate = train.probe_rate(run.cfg.model, d.image_size, d.pretext_batch)
    labelled = train.probe_rate(run.cfg.model, d.image_size, d.batch_size, classes=sizes["classes"])
    keras.utils.set_random_seed(run.cfg.seed)  # the probes' models leave the run's random draws as they were
    run.clock.rate, run.clock.rate_from = rate, "probe"
    run.clock.probes = {4 * d.pretext_batch: rate, d.batch_size: labelled}
    return {"budget_minutes": run.cfg.budget_minutes, "probe_samples_per_s": round(rate, 1),
            "probe_classifier_samples_per_s": round(labelled, 1), "sizes": sizes,
            "config_epochs": config_epochs, "plans": []}


def _fit_budget(run: Run, stages, plan: dict, before: str) -> None:
    """Sets the epochs of the fits not yet begun to fit the budget left (`budget.fit_budget`, each fit at the rate
    `Clock.rate_for` expects), before the training stage `before` starts.

    `run.cfg` and config.json get the epochs and `budget_minutes=None`: `--config <run>/config.json` re-makes
    the run without planning again, and a resumed run keeps them. plan.json keeps the budget, the probe and each
    plan.

    Under `max_minutes` (a cap, `plan` without "budget_minutes") it plans once a fit is measured, keeps each
    section's epochs at most the config's, cuts the stage about to start last (`budget.fit_cap`), and changes
    nothing (config.json, plan.json, the log) while the config's epochs fit.
    """
    from ssl_keras import budget, config as config_lib

    clock = run.clock
    cap = "budget_minutes" not in plan
    if cap and not clock.rates:
        return
    begun = set(clock.took) | set(clock.started)
    left = [f for f in clock.fits.values() if f.name not in begun
            and not (run.resume and os.path.exists(run.path(f.name, "history.csv")))]
    minutes = plan["max_minutes"] if cap else plan["budget_minutes"]
    seconds = minutes * 60 - (clock.now() - clock.start_time)
    rates = {f.name: clock.rate_for(f) for f in left}
    if cap:
        starting = {f.name for f in budget.fits(run.cfg, plan["sizes"], (before,))}
        epochs = budget.fit_cap(left, starting, plan["config_epochs"], seconds, rates)
    else:
        epochs = budget.fit_budget(left, plan["config_epochs"], seconds, rates)
    if cap and all(epochs[f.key] == f.epochs for f in left if f.key):  # the config's epochs fit: as given
        return
    if not epochs:
        return
    run.cfg = budget.planned(run.cfg, epochs)
    write_json(run.path("config.json"), config_lib.to_dict(run.cfg))
    clock.set_fits(budget.fits(run.cfg, plan["sizes"], stages))
    plan["plans"].append({"before": before, "seconds_left": round(seconds, 1), "epochs": epochs,
                          "samples_per_s": {name: round(r, 1) for name, r in rates.items()}})
    write_json(run.path("plan.json"), plan)
    left_text = f"{budget.duration(seconds)} left" if seconds > 0 else f"spent ({budget.duration(-seconds)} over)"
    run.log(f"[{'time cap' if cap else 'budget'}] {minutes:g} min, {left_text}: "
            + ", ".join(f"{k} {n} epochs (config: {plan['config_epochs'][k]})" for k, n in epochs.items()))
    run.log(clock.line())


def _trained_seconds(run: Run, stage: str) -> float:
    """The training time the stage.json files of `stage` record (for a stage skipped by --resume)."""
    if stage == "finetune":
        names = [c.dir for c in classifiers(run.cfg) if c.freeze is not None]
    elif stage == "methods":
        names = [c.dir for c in classifiers(run.cfg) if c.method != "pretrain"]
    else:
        names = [stage]
    return round(sum(run.stage_info(n).get("wall_time_s", 0) for n in names), 1)


def run_stages(run: Run, stages, *, export_dir="export", model_name="dog_breeds", model=None, top_k=None) -> dict:
    """Runs `stages` (names from `STAGES`) in order, recording each one's wall time in wall_time.json.

    `export_dir`, `model_name`, `model` (a .keras file; default: the run's best) and `top_k` are the
    export's.

    With training stages among them, prints the whole run's time as it goes (`[plan]`, `budget.Clock`);
    under `cfg.budget_minutes`, first sets their epochs to fit it (`_fit_budget`).

    Returns:
        The report when `report` was among them, else {}.
    """
    options = {"export": {"model_arg": model, "export_dir": export_dir, "model_name": model_name, "top_k": top_k}}
    wall_path = run.path("wall_time.json")
    wall = read_json(wall_path) if os.path.exists(wall_path) else {}
    result = {}
    plan = _start_clock(run, stages)
    for stage in stages:
        if stage not in STAGES:
            raise ValueError(f"Unknown stage {stage!r}. Expected one of {tuple(STAGES)}.")
        start, trained = time.time(), run.trained
        if stage in TRAINING and plan:
            _fit_budget(run, stages, plan, before=stage)
        out = STAGES[stage](run, **options.get(stage, {}))
        if stage == "evaluate" and run.clock:
            run.clock.finish("evaluate", time.time() - start)
        if stage == "report":
            result = out
            continue
        if stage in TRAINING and run.trained == trained:
            # Skipped by --resume: keep the time it took, or, for a stage trained elsewhere and copied
            # in, read the time its stage.json recorded.
            wall.setdefault(stage, _trained_seconds(run, stage))
        else:
            wall[stage] = round(time.time() - start, 1)
        write_json(wall_path, wall)
    if run.clock and run.clock.took:
        _write_speed(run)
    return result


def _write_speed(run: Run) -> None:
    """speed.json: the matmul rate at the start and the end of the stages, the training FLOPs of a sample, and
    each fit's samples/s and share of the matmul rate (`budget.Clock.speed`); `benchmarks/stage_table.py` makes
    BENCHMARKS' per-stage table of it."""
    from ssl_keras import speed

    clock = run.clock
    start, end = clock.matmul or 0.0, speed.run_matmul_gflops()
    clock.matmul = max(start, end)  # the shares are of the faster figure
    write_json(run.path("speed.json"), {
        "matmul_gflops": {"start": round(start, 1), "end": round(end, 1)},
        "train_mflop_per_sample": round(clock.flops / 1e6, 2) if clock.flops else None,
        "load_average": round(os.getloadavg()[0], 2), "fits": clock.speed()})
