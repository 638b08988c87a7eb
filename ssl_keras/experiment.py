"""The experiment as a library: the stages of a run, each a function of its `Run` (`ssl_keras.rundir`).

    from ssl_keras import experiment, presets, rundir
    run = rundir.Run(presets.quick(), "models/my-run")
    experiment.prepare(run.cfg)
    experiment.run_stages(run, experiment.PIPELINE)

The command line (`ssl_keras.run`) and every benchmark call these functions, so a
benchmark makes exactly the splits and models that `python -m ssl_keras.run` makes.
The article's stages (baseline, pretext, finetune), the methods that use the
unlabelled photos again (`ssl_keras.methods`), scoring, predict and export.
"""

from __future__ import annotations

import math
import os
import shutil
import time

from ssl_keras.config import METHODS
from ssl_keras.rundir import (Run, best_so_far, classifiers, model_path, read_json, trained_before, val_score,
                              write_json)

# --- the article's stages ----------------------------------------------------------------------------------------


def _new_classifier(run: Run, init: str, freeze: str, *, pretext=None, teacher_path=None):
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


def _classifier_stage(run: Run, name: str, init: str, freeze: str, fit, *, pretext=None, teacher=None,
                      **extra) -> dict:
    """Trains one breed classifier into `run/name` with `fit(model, stage_dir) -> history`; returns its stage.json.

    Skipped (and its stage.json returned) when a resumed run has finished it.
    """
    from ssl_keras import distribute, plots, train, transfer

    if (done := run.stage_done(name)) is not None:
        run.log(f"[{name}] already finished; skipping (--resume).")
        return done
    start = time.time()
    strategy = distribute.strategy_for(run.cfg.strategy)  # the one main() made (strategy_for keeps it)
    with strategy.scope():  # build, compile and fit under the strategy
        model, copied = _new_classifier(run, init, freeze, pretext=pretext,
                                        teacher_path=run.path(teacher, "best.keras") if teacher else None)
        params = transfer.count_params(model)
        run.log(f"\n[{name}] {len(run.split['labelled'])} labelled photos; start: {init}"
                f"{f' ({teacher})' if teacher else ''}; backbone weights copied: {copied}; freeze={freeze}; "
                f"trainable params {params['trainable']:,}, frozen {params['non_trainable']:,}")
        hist = fit(model, run.path(name))
    best = train.best_epoch(hist)
    plots.history(hist, name, run.path(name, "curves.png"), best_epoch=best)
    return run.finish_stage(name, start, epochs=len(hist.get("loss", [])),
                            best_val_accuracy=max(hist.get("val_accuracy", [0.0])), best_epoch=best,
                            val_accuracy_last=train.last_epochs_mean(hist), weights_copied=copied, init=init,
                            teacher=teacher, freeze=freeze, **params, **extra)


def _fit_labelled(run: Run, stage):
    """`fit(model, stage_dir)` for a classifier trained on the labelled photos alone."""
    from ssl_keras import train

    def fit(model, stage_dir):
        steps = math.ceil(len(run.split["labelled"]) / run.cfg.data.batch_size)
        return train.fit(model, run.labelled("labelled", training=True, stage=stage, repeat=True),
                         run.labelled("val"), stage, stage_dir, steps_per_epoch=steps, resume=run.resume,
                         verbose=run.verbose, log=run.log, clock=run.clock)

    return fit


def baseline(run: Run) -> dict:
    """A classifier trained from scratch on the labelled photos."""
    return _classifier_stage(run, "baseline", "scratch", "none", _fit_labelled(run, run.cfg.baseline))


def _accelerator() -> str | None:
    """"/GPU:0" when TensorFlow sees a GPU (the rotations then run there), else None."""
    import tensorflow as tf

    return "/GPU:0" if tf.config.list_physical_devices("GPU") else None


def pretext(run: Run) -> dict:
    """The same backbone with a 4-way head, trained to predict the rotation of unlabelled photos."""
    from ssl_keras import data, distribute, models, plots, rotations, train

    if (done := run.stage_done("pretext")) is not None:
        run.log("[pretext] already finished; skipping (--resume).")
        return done
    cfg, start = run.cfg, time.time()
    strategy = distribute.strategy_for(cfg.strategy)
    d = cfg.data
    keys, val_keys = run.split["unlabelled"], run.split["unlabelled_val"]
    # Under mirrored / multi-worker the strategy places the batches on its devices itself.
    train_ds = data.pretext_dataset(run.source, keys, d.image_size, d.batch_size, training=True, stage=cfg.pretext,
                                    seed=cfg.seed, device=_accelerator() if cfg.strategy == "default" else None)
    val_ds = data.pretext_dataset(run.source, val_keys, d.image_size, d.batch_size)
    os.makedirs(run.path("pretext"), exist_ok=True)
    example, labels = next(iter(val_ds))
    b = example.shape[0] // 4
    plots.rotations(example.numpy()[::b][:4], labels.numpy()[::b][:4], rotations.ANGLES,
                    run.path("pretext", "rotations.png"))
    run.log(f"\n[pretext] {len(keys)} unlabelled photos -> {4 * len(keys)} rotated samples an epoch; "
            f"{4 * len(val_keys)} for validation")
    with strategy.scope():
        model = models.build_rotation_model(cfg.model, d.image_size)
        hist = train.fit(model, train_ds.repeat(), val_ds, cfg.pretext, run.path("pretext"),
                         steps_per_epoch=math.ceil(len(keys) / d.batch_size), resume=run.resume,
                         verbose=run.verbose, log=run.log, clock=run.clock)
    best = train.best_epoch(hist)
    plots.history(hist, "pretext (rotation)", run.path("pretext", "curves.png"), best_epoch=best)
    return run.finish_stage("pretext", start, epochs=len(hist.get("loss", [])),
                            best_val_accuracy=max(hist.get("val_accuracy", [0.0])), best_epoch=best,
                            val_accuracy_last=train.last_epochs_mean(hist), samples_per_epoch=4 * len(keys))


def _pretext_model(run: Run):
    """The run's rotation model (its best epoch)."""
    from ssl_keras import models

    path = run.path("pretext", "best.keras")
    if not os.path.exists(path):
        raise ValueError(f"No pretext model at {path!r}. Run the `pretext` stage first.")
    return models.load(path)


def finetune(run: Run) -> dict:
    """Fresh breed classifiers on the pretext backbone: fully frozen (for comparison) and as configured."""
    model = _pretext_model(run)
    out = {}
    for entry in classifiers(run.cfg):
        if entry.freeze is not None:
            out[entry.dir] = _classifier_stage(run, entry.dir, "pretext", entry.freeze,
                                               _fit_labelled(run, run.cfg.finetune), pretext=model)
    return out


# --- the semi-supervised methods ---------------------------------------------------------------------------------


def _photos(run: Run):
    """Endless batches of the unlabelled pool's photos as they are (no augmentation): what BatchNorm's moving
    statistics are re-estimated on before a method's classifier is validated."""
    from ssl_keras import data

    d = run.cfg.data
    return data.unlabelled_dataset(run.source, run.pool, d.image_size, d.batch_size, seed=run.cfg.seed + 1)


def _method_freeze(cfg) -> str:
    """Blocks frozen when a method starts from trained weights: as fine-tuning does (nothing, for `all`)."""
    return "none" if cfg.freeze == "all" else cfg.freeze


def rotation_aux(run: Run) -> dict:
    """Breed and rotation losses together on one backbone, from scratch and from the pretext backbone."""
    from ssl_keras import data
    from ssl_keras.methods import rotation_aux as method

    cfg, mc = run.cfg, run.cfg.rotation_aux
    d = cfg.data
    out = {}
    for start in mc.starts:
        name = "rotation_aux" if start == "pretext" else "rotation_aux_scratch"

        pretext_model = _pretext_model(run) if start == "pretext" else None

        def fit(model, stage_dir, pretext_model=pretext_model):
            unlabelled = data.unlabelled_dataset(run.source, run.pool, d.image_size,
                                                 mc.unlabelled_batch_size or d.batch_size, stage=mc.train,
                                                 seed=cfg.seed)
            return method.train_classifier(
                model, cfg.model, d.image_size, mc, run.labelled("labelled", training=True, stage=mc.train,
                                                                 repeat=True),
                unlabelled, run.labelled("val"), steps_per_epoch=math.ceil(len(run.split["labelled"]) / d.batch_size),
                stage_dir=stage_dir, pretext=pretext_model, photos=_photos(run), resume=run.resume,
                verbose=run.verbose, log=run.log, clock=run.clock)

        out[name] = _classifier_stage(run, name, start, _method_freeze(cfg) if start == "pretext" else "none", fit,
                                      pretext=pretext_model, rotation_weight=mc.weight)
    return out


def self_training(run: Run) -> dict:
    """Rounds of pseudo-labels from the best classifier so far, each training a student."""
    import numpy as np

    from ssl_keras import data
    from ssl_keras.methods import self_training as method

    if (done := run.stage_done("self_training")) is not None:
        run.log("[self_training] already finished; skipping (--resume).")
        return done
    cfg, mc = run.cfg, run.cfg.self_training
    d, classes, pool = cfg.data, run.classes, run.pool
    start = time.time()
    true_class = _true_class(run)
    pretext_model = _pretext_model(run) if mc.init == "pretext" else None
    rounds, students = [], []
    for r in range(1, mc.rounds + 1):
        name = os.path.join("self_training", f"round{r}")
        teacher = best_so_far(run, "self_training", extra=students)
        if teacher is None:
            raise ValueError("Self-training needs a trained classifier as its teacher. Run `baseline` first.")
        members = _teachers(run, mc, extra=students)
        labels_path = run.path(name, "pseudo_labels.json")
        if run.resume and os.path.exists(labels_path):
            chosen = read_json(labels_path)
        else:
            chosen = _pseudo_labels(run, members, pool, classes, mc, true_class)
            os.makedirs(run.path(name), exist_ok=True)
            write_json(labels_path, chosen)
        info = chosen["report"]
        precision = "-" if info["in_class_precision"] is None else f"{info['in_class_precision']:.3f}"
        run.log(f"\n[{name}] teacher {' + '.join(info['teacher'])} (validation {info['teacher_val_accuracy']:.3f}); "
                f"threshold "
                f"{info['threshold']:.3f}: {info['pseudo_labelled']} of {info['pool']} pool photos pseudo-labelled, "
                f"{info['other_breeds']} of other breeds, in-class precision {precision}")
        if not chosen["keys"]:
            raise ValueError(f"No pool photo passed the pseudo-label threshold {info['threshold']:.3f} in {name}. "
                             "Lower `self_training.threshold` or `self_training.min_precision`.")

        def fit(model, stage_dir, chosen=chosen):
            eye = np.eye(len(classes), dtype=np.float32)
            lab_keys = [k for k, _ in run.split["labelled"]]
            lab_targets = eye[[y for _, y in run.split["labelled"]]]
            labelled = data.examples(run.source, lab_keys, lab_targets.tolist(), d.image_size, seed=cfg.seed)
            pseudo = data.examples(run.source, chosen["keys"], chosen["targets"], d.image_size, seed=cfg.seed + 1)
            batches = method.dataset(labelled, pseudo, mc.labelled_fraction, d.batch_size,
                                     data.augmenter(mc.train, cfg.seed), mc.rotation_weight > 0, cfg.seed,
                                     mixup_alpha=mc.mixup)
            steps = math.ceil((len(lab_keys) + len(chosen["keys"])) / d.batch_size)
            return method.train_student(model, cfg.model, d.image_size, mc, batches, run.labelled("val"),
                                        steps_per_epoch=steps, stage_dir=stage_dir, photos=_photos(run),
                                        resume=run.resume, verbose=run.verbose, log=run.log, clock=run.clock)

        freeze = "none" if mc.init == "scratch" else _method_freeze(cfg)
        stage = _classifier_stage(run, name, mc.init, freeze, fit, pretext=pretext_model,
                                  teacher=teacher if mc.init == "teacher" else None, pseudo_labels=info)
        students.append(name)
        rounds.append({"round": r, **info, "student_val_accuracy": stage["best_val_accuracy"],
                       "student_val_accuracy_last": stage["val_accuracy_last"]})
    best = max(students, key=lambda n: val_score(run.stage_info(n)))
    for f in ("best.keras", "best.json", "final.keras", "history.csv", "curves.png"):
        tmp = run.path("self_training", f + ".tmp")
        shutil.copy(run.path(best, f), tmp)
        os.replace(tmp, run.path("self_training", f))
    kept = run.stage_info(best)
    return run.finish_stage("self_training", start, **{k: kept[k] for k in (
        "epochs", "best_val_accuracy", "best_epoch", "val_accuracy_last", "weights_copied", "init", "freeze",
        "trainable", "non_trainable")}, best_round=int(best.rsplit("round", 1)[1]), rounds=rounds)


def _true_class(run: Run):
    """key -> the class its source files it under (ImageFolder: its folder); for reports, never for choices."""
    labels = {r.key: r.label for r in run.source.records()}
    return lambda key: labels.get(key)


def _teachers(run: Run, mc, extra=()) -> list[str]:
    """The classifiers whose mean prediction labels the pool: the best so far (`teacher=best`), or with
    `teacher=ensemble` every trained classifier within `ensemble_margin` of its validation score."""
    best = best_so_far(run, "self_training", extra)
    if mc.teacher == "best":
        return [best]
    floor = val_score(run.stage_info(best)) - mc.ensemble_margin
    return [n for n in trained_before(run, "self_training", extra) if val_score(run.stage_info(n)) >= floor]


def _pseudo_labels(run: Run, members: list[str], pool, classes, mc, true_class) -> dict:
    """The teacher's pseudo-labels on `pool`: chosen keys, their targets, and the report of the choice.

    The teacher is the mean prediction of the classifiers `members` (each on the photo and its mirror).
    """
    import numpy as np

    from ssl_keras import data, models
    from ssl_keras.methods import self_training as method

    d = run.cfg.data
    teachers = [models.load(run.path(m, "best.keras")) for m in members]
    batches = data.labelled_dataset(run.source, [[k, 0] for k in pool], d.image_size, d.batch_size)
    val_probs = np.mean([method.predict_flip_mean(t, run.labelled("val")) for t in teachers], axis=0)
    probs = np.mean([method.predict_flip_mean(t, batches) for t in teachers], axis=0)
    val_labels = np.array([y for _, y in run.split["val"]])
    threshold = (method.threshold_for_precision(val_probs, val_labels, mc.min_precision) if mc.min_precision
                 else mc.threshold)
    chosen = method.select(probs, threshold, mc.per_class, mc.balance)
    if mc.soft:
        targets = method.sharpen(probs[chosen], mc.temperature)
    else:
        targets = np.eye(len(classes))[probs[chosen].argmax(1)]
    report = {"teacher": members, "threshold": float(threshold), "min_precision": mc.min_precision,
              "teacher_val_accuracy": float(np.mean(val_probs.argmax(1) == val_labels)),
              **method.pseudo_label_report(pool, probs, chosen, classes, true_class)}
    return {"keys": [pool[i] for i in chosen], "targets": np.round(targets, 6).tolist(), "report": report}


def fixmatch(run: Run) -> dict:
    """Consistency between weak and strong views of the unlabelled photos, from the best classifier so far."""
    from ssl_keras import data
    from ssl_keras.methods import fixmatch as method

    cfg, mc = run.cfg, run.cfg.fixmatch
    d = cfg.data
    teacher = best_so_far(run, "fixmatch") if mc.init == "teacher" else None
    if mc.init == "teacher" and teacher is None:
        raise ValueError("`fixmatch.init=teacher` needs a trained classifier. Run `baseline` first.")

    def fit(model, stage_dir):
        unlabelled = data.unlabelled_dataset(run.source, run.pool, d.image_size, mc.ratio * d.batch_size,
                                             seed=cfg.seed)
        return method.train_classifier(
            model, cfg.model, d.image_size, len(run.classes), mc,
            run.labelled("labelled", training=True, stage=mc.train, repeat=True), unlabelled, run.labelled("val"),
            steps_per_epoch=math.ceil(len(run.pool) / (mc.ratio * d.batch_size)), stage_dir=stage_dir,
            photos=_photos(run), seed=cfg.seed, resume=run.resume, verbose=run.verbose, log=run.log,
            clock=run.clock)

    freeze = "none" if mc.init == "scratch" else _method_freeze(cfg)
    return _classifier_stage(run, "fixmatch", mc.init, freeze, fit,
                             pretext=_pretext_model(run) if mc.init == "pretext" else None, teacher=teacher,
                             threshold=mc.threshold, ratio=mc.ratio)


METHOD_STAGES = {"rotation_aux": rotation_aux, "self_training": self_training, "fixmatch": fixmatch}


def methods(run: Run) -> dict:
    """Every method of `cfg.method` after the article's stages, in the order of `config.METHODS`."""
    return {m: METHOD_STAGES[m](run) for m in METHODS if m in run.cfg.method and m != "pretrain"}


# --- scoring, predict, export ------------------------------------------------------------------------------------


def evaluate(run: Run) -> dict:
    """Test metrics of every classifier of the run, from its best checkpoint."""

    from ssl_keras import evaluate as evaluate_lib, models, plots

    test = run.labelled("test")
    out = {}
    for entry in classifiers(run.cfg):
        path = run.path(entry.dir, "best.keras")
        if not os.path.exists(path):
            continue
        probs, labels = evaluate_lib.predict_dataset(models.load(path), test)
        m = evaluate_lib.metrics(probs, labels, run.classes)
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
    from ssl_keras import evaluate as evaluate_lib, preprocessing

    return evaluate_lib.predict_image(model, preprocessing.read_photo(path))


def predict(run: Run, images, model_arg=None, top_k=None, out=print, err=print) -> int:
    """Prints the top-k breeds of each photo; a photo that cannot be read is reported, not fatal.

    Returns:
        0 when every photo was read, else 1.
    """
    from ssl_keras import evaluate as evaluate_lib, models

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
        for name, p in evaluate_lib.top_k(probs, run.classes, top_k or run.cfg.top_k):
            out(f"  {p * 100:6.2f}%  {'#' * round(p * 30):30s} {name}")
    return 1 if failed else 0


def export(run: Run, model_arg=None, export_dir="export", model_name="dog_breeds", top_k=None) -> dict:
    """SavedModel (a new version), TF.js float32/float16 and the web page under `export_dir`.

    The TF.js models are measured on the run's test split; the returned dict, which names
    the run and the model file, is written to `export_dir/export.json` and `run/export.json`.
    """

    from ssl_keras import export as export_lib, models

    path = model_path(run, model_arg)
    run.log(f"\n[export] {path} -> {export_dir}/")
    info = export_lib.export_all(models.load(path), run.classes, export_dir, model_name=model_name,
                                 top_k=top_k or run.cfg.top_k, test_items=run.split["test"], source=run.source,
                                 provenance={"run_dir": os.path.abspath(run.dir), "model": os.path.abspath(path)})
    write_json(run.path("export.json"), info)
    return info


# --- running stages ----------------------------------------------------------------------------------------------


def prepare(cfg) -> None:
    """What a process does once before its first stage: the seed, the precision policy, the strategy."""
    import keras

    from ssl_keras import distribute

    distribute.strategy_for(cfg.strategy)  # multi-worker must exist before any TensorFlow op
    keras.utils.set_random_seed(cfg.seed)
    if cfg.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")


TRAINING = {"baseline": baseline, "pretext": pretext, "finetune": finetune, "methods": methods}
PIPELINE = ("baseline", "pretext", "finetune", "methods", "evaluate", "export", "report")


def _start_clock(run: Run, stages) -> dict | None:
    """Gives `run` the clock of `stages` (None without training stages); a resumed run's finished fits show
    the time they took. Under `cfg.budget_minutes`, times a probe of the training step (the clock's rate until
    a fit is measured) and returns the budget's plan (what `_fit_budget` keeps in plan.json), else None."""
    import keras

    from ssl_keras import budget, train

    run.clock = None
    if not any(s in TRAINING for s in stages):
        return None
    begin = time.monotonic()
    sizes = budget.sizes(run.split)
    fits = budget.fits(run.cfg, sizes, stages)
    run.clock = budget.Clock(fits, root=run.dir, log=run.log, extra="+ export" if "export" in stages else "",
                             start=begin)
    for f in fits:
        if run.resume and (info := run.stage_info(f.name)):
            run.clock.finish(f.name, info.get("wall_time_s", 0.0), quiet=True)
    if not run.cfg.budget_minutes:
        return None
    d = run.cfg.data
    rate = train.probe_rate(run.cfg.model, d.image_size, d.batch_size)
    keras.utils.set_random_seed(run.cfg.seed)  # the probe's model leaves the run's random draws as they were
    run.clock.rate, run.clock.rate_from = rate, "probe"
    return {"budget_minutes": run.cfg.budget_minutes, "probe_samples_per_s": round(rate, 1), "sizes": sizes,
            "config_epochs": {f.key: f.epochs for f in fits if f.key}, "plans": []}


def _fit_budget(run: Run, stages, plan: dict, before: str) -> None:
    """Sets the epochs of the fits not yet begun to fit the budget left (`budget.fit_budget`, each fit at the rate
    `Clock.rate_for` expects), before the training stage `before` starts.

    `run.cfg` and config.json get the epochs and `budget_minutes=None`: `--config <run>/config.json` re-makes
    the run without planning again, and a resumed run keeps them. plan.json keeps the budget, the probe and each
    plan.
    """
    from ssl_keras import budget, config as config_lib

    clock = run.clock
    begun = set(clock.took) | set(clock.started)
    left = [f for f in clock.fits.values() if f.name not in begun
            and not (run.resume and os.path.exists(run.path(f.name, "history.csv")))]
    seconds = plan["budget_minutes"] * 60 - (clock.now() - clock.start_time)
    rates = {f.name: clock.rate_for(f) for f in left}
    epochs = budget.fit_budget(left, plan["config_epochs"], seconds, rates)
    if not epochs:
        return
    run.cfg = config_lib.override(run.cfg, {**budget.overrides(epochs), "budget_minutes": None})
    write_json(run.path("config.json"), config_lib.to_dict(run.cfg))
    clock.set_fits(budget.fits(run.cfg, plan["sizes"], stages))
    plan["plans"].append({"before": before, "seconds_left": round(seconds, 1), "epochs": epochs,
                          "samples_per_s": {name: round(r, 1) for name, r in rates.items()}})
    write_json(run.path("plan.json"), plan)
    left_text = f"{budget.duration(seconds)} left" if seconds > 0 else f"spent ({budget.duration(-seconds)} over)"
    run.log(f"[budget] {plan['budget_minutes']:g} min, {left_text}: "
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
    """Runs `stages` (names from `PIPELINE`) in order, recording each one's wall time in wall_time.json.

    With training stages among them, prints the whole run's time as it goes (`[plan]`, `budget.Clock`);
    under `cfg.budget_minutes`, first sets their epochs to fit it (`_fit_budget`).

    Returns:
        The report when `report` was among them, else {}.
    """
    wall_path = run.path("wall_time.json")
    wall = read_json(wall_path) if os.path.exists(wall_path) else {}
    result = {}
    plan = _start_clock(run, stages)
    for stage in stages:
        start, trained = time.time(), run.trained
        if stage in TRAINING:
            if plan:
                _fit_budget(run, stages, plan, before=stage)
            TRAINING[stage](run)
        elif stage == "evaluate":
            evaluate(run)
            if run.clock:
                run.clock.finish("evaluate", time.time() - start)
        elif stage == "export":
            export(run, model, export_dir, model_name, top_k)
        elif stage == "report":
            from ssl_keras import report

            result = report.report(run)
            continue
        else:
            raise ValueError(f"Unknown stage {stage!r}. Expected one of {PIPELINE}.")
        if stage in TRAINING and run.trained == trained:
            # Skipped by --resume: keep the time it took, or, for a stage trained elsewhere and copied
            # in, read the time its stage.json recorded.
            wall.setdefault(stage, _trained_seconds(run, stage))
        else:
            wall[stage] = round(time.time() - start, 1)
        write_json(wall_path, wall)
    return result
