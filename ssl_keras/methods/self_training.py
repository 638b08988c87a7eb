"""Self-training: a teacher's pseudo-labels on the unlabelled pool train a student (S4L, Noisy Student).

The teacher predicts every photo of the unlabelled pool (the mean of the photo and its
mirror image). Photos whose confidence passes the threshold, balanced across classes,
join the labelled photos, with the teacher's probabilities (or its top breed) as
targets; the student trains on both with augmentation, and optionally with the
rotation loss on its batches. Pseudo-labels never come from validation or test photos:
the pool is the split's `unlabelled` and `unlabelled_val` parts only.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from ssl_keras import classifier_stage, files
from ssl_keras.config_base import STUDENT_INITS, Classifier, Method, StageConfig, check

TEACHERS = ("best", "ensemble")


@dataclass(frozen=True)
class SelfTrainingConfig:
    """Self-training: a teacher labels the unlabelled pool, a student learns from both.

    The teacher is the classifier of the run with the best validation score so far (round 2 on:
    the previous students count too), or with `teacher="ensemble"` the mean prediction of every
    classifier within `ensemble_margin` of that score. A pool photo gets a pseudo-label
    when the teacher's confidence (the mean of the photo and its mirror image) is at least
    the threshold: `threshold`, or with `min_precision > 0` the lowest confidence at which
    the teacher is right on `min_precision` of the *validation* photos. At most `per_class`
    photos a class (the most confident; 0: no cap) and, with `balance`, as many for every
    class as the class with fewest. Targets are the teacher's probabilities (`soft`, sharpened
    by `temperature` < 1) or its top breed. The student (`init`) trains on the labelled and pseudo-labelled photos with
    augmentation, `labelled_fraction` of each batch labelled, plus `rotation_weight` x the
    rotation loss on the batch; with `mixup` > 0, photos and targets are blended (MixUp, Beta(mixup,
    mixup)), as pseudo-labelling needs against confirmation bias (Arazo et al. 2020). An epoch is a
    pass over the labelled and pseudo-labelled photos.
    """

    rounds: int = 1
    teacher: str = "best"
    ensemble_margin: float = 0.05
    threshold: float = 0.0
    min_precision: float = 0.0
    per_class: int = 0
    balance: bool = True
    soft: bool = True
    temperature: float = 1.0
    mixup: float = 0.0
    labelled_fraction: float = 0.25
    rotation_weight: float = 0.0
    init: str = "pretext"
    train: StageConfig = field(default_factory=lambda: StageConfig(epochs=30))

    def __post_init__(self):
        check(self.rounds >= 1, f"`self_training.rounds` must be >= 1. Received: {self.rounds}")
        check(self.teacher in TEACHERS,
              f"`self_training.teacher` must be one of {TEACHERS}. Received: {self.teacher!r}")
        check(self.ensemble_margin >= 0,
              f"`self_training.ensemble_margin` must be >= 0. Received: {self.ensemble_margin}")
        check(self.temperature > 0, f"`self_training.temperature` must be > 0. Received: {self.temperature}")
        check(self.mixup >= 0, f"`self_training.mixup` must be >= 0 (0: no MixUp). Received: {self.mixup}")
        check(0.0 <= self.threshold < 1.0, f"`self_training.threshold` must be in [0, 1). Received: {self.threshold}")
        check(0.0 <= self.min_precision < 1.0,
              f"`self_training.min_precision` must be in [0, 1). Received: {self.min_precision}")
        check(self.per_class >= 0, f"`self_training.per_class` must be >= 0. Received: {self.per_class}")
        check(0.0 < self.labelled_fraction < 1.0,
              f"`self_training.labelled_fraction` must be in (0, 1). Received: {self.labelled_fraction}")
        check(self.rotation_weight >= 0,
              f"`self_training.rotation_weight` must be >= 0. Received: {self.rotation_weight}")
        check(self.init in STUDENT_INITS,
              f"`self_training.init` must be one of {STUDENT_INITS}. Received: {self.init!r}")


# --- the teacher's pseudo-labels -------------------------------------------------------------------------------------


def predict_flip_mean(model, batches) -> np.ndarray:
    """(N, C) mean of the probabilities of each photo and of its mirror image; `batches` yields pixels
    (or (pixels, label) pairs, whose labels are ignored)."""
    import tensorflow as tf

    out = []
    for batch in batches:
        x = batch[0] if isinstance(batch, tuple) else batch
        p = np.asarray(model(x, training=False), np.float64)
        p_flip = np.asarray(model(tf.reverse(x, axis=[2]), training=False), np.float64)  # mirror: width axis
        out.append((p + p_flip) / 2)
    return np.concatenate(out) if out else np.zeros((0, 0))


def sharpen(probs, temperature: float) -> np.ndarray:
    """Probabilities raised to 1 / `temperature` and normalised (MixMatch's sharpening; 1: unchanged)."""
    p = np.asarray(probs, np.float64) ** (1.0 / temperature)
    return p / p.sum(axis=1, keepdims=True)


def threshold_for_precision(probs, labels, min_precision: float, min_count: int = 10) -> float:
    """The lowest confidence at which the teacher is right on at least `min_precision` of the validation
    photos it is at least that confident on (counting at least `min_count` of them).

    Args:
        probs: (N, C) teacher probabilities on the validation photos.
        labels: (N,) their true classes.

    Returns:
        The threshold; 1.0 (no pseudo-label) when no confidence reaches `min_precision`.
    """
    probs, labels = np.asarray(probs), np.asarray(labels).astype(int)
    conf = probs.max(1)
    order = np.argsort(-conf, kind="stable")
    correct = (probs.argmax(1) == labels)[order]
    precision = np.cumsum(correct) / np.arange(1, len(order) + 1)
    ok = [i for i in range(min(min_count, len(order)) - 1, len(order)) if precision[i] >= min_precision]
    return float(conf[order][max(ok)]) if ok else 1.0


def select(probs, threshold: float, per_class: int = 0, balance: bool = True) -> np.ndarray:
    """Indices of the pool photos that get a pseudo-label, most confident first within each class.

    A photo qualifies when its top probability is at least `threshold`. Each class keeps
    its `per_class` most confident photos (0: all); with `balance`, every class keeps as
    many as the class with fewest (classes with none left aside).
    """
    probs = np.asarray(probs)
    conf, pred = probs.max(1), probs.argmax(1)
    chosen = []
    for c in range(probs.shape[1]):
        idx = np.flatnonzero((pred == c) & (conf >= threshold))
        chosen.append(idx[np.argsort(-conf[idx], kind="stable")])
    caps = [len(i) for i in chosen]
    if per_class:
        caps = [min(n, per_class) for n in caps]
    if balance and any(caps):
        floor = min(n for n in caps if n)
        caps = [min(n, floor) for n in caps]
    return np.concatenate([i[:n] for i, n in zip(chosen, caps)]).astype(int) if chosen else np.zeros(0, int)


def pseudo_label_report(keys, probs, chosen, classes, true_class) -> dict:
    """How many pool photos got a pseudo-label, how many show other breeds, and the precision on the rest.

    `true_class(key)` is the photo's folder class: used for this report only, never for the choice.
    """
    pred = np.asarray(probs).argmax(1)
    truth = [true_class(keys[i]) for i in chosen]
    in_class = [(t, classes[pred[i]]) for i, t in zip(chosen, truth) if t in classes]
    unknown = sum(t is None for t in truth)  # your own unlabelled folders: nobody knows their class
    return {
        "pool": len(keys),
        "pseudo_labelled": int(len(chosen)),
        "other_breeds": int(len(chosen) - len(in_class) - unknown),
        "class_unknown": int(unknown),
        "in_class_precision": float(np.mean([t == p for t, p in in_class])) if in_class else None,
        "per_class": {c: int((pred[chosen] == i).sum()) for i, c in enumerate(classes)},
    }


def _true_class(run):
    """key -> the class its source files it under (ImageFolder: its folder); for reports, never for choices."""
    labels = {r.key: r.label for r in run.source.records()}
    return lambda key: labels.get(key)


def _teachers(run, mc, extra=()) -> list[str]:
    """The classifiers whose mean prediction labels the pool: the best so far (`teacher=best`), or with
    `teacher=ensemble` every trained classifier within `ensemble_margin` of its validation score."""
    best = classifier_stage.best_so_far(run, "self_training", extra)
    if mc.teacher == "best":
        return [best]
    score = classifier_stage.val_score
    floor = score(run.stage_info(best)) - mc.ensemble_margin
    return [n for n in classifier_stage.trained_before(run, "self_training", extra)
            if score(run.stage_info(n)) >= floor]


def _pseudo_labels(run, members: list[str], pool, classes, mc, true_class) -> dict:
    """The teacher's pseudo-labels on `pool`: chosen keys, their targets, and the report of the choice.

    The teacher is the mean prediction of the classifiers `members` (each on the photo and its mirror).
    """
    from ssl_keras import data, models

    d = run.cfg.data
    teachers = [models.load(run.path(m, "best.keras")) for m in members]
    batches = data.labelled_dataset(run.source, [[k, 0] for k in pool], d.image_size, d.batch_size)
    val_probs = np.mean([predict_flip_mean(t, run.dataset("val")) for t in teachers], axis=0)
    probs = np.mean([predict_flip_mean(t, batches) for t in teachers], axis=0)
    val_labels = np.array([y for _, y in run.split["val"]])
    threshold = (threshold_for_precision(val_probs, val_labels, mc.min_precision) if mc.min_precision
                 else mc.threshold)
    chosen = select(probs, threshold, mc.per_class, mc.balance)
    if mc.soft:
        targets = sharpen(probs[chosen], mc.temperature)
    else:
        targets = np.eye(len(classes))[probs[chosen].argmax(1)]
    report = {"teacher": members, "threshold": float(threshold), "min_precision": mc.min_precision,
              "teacher_val_accuracy": float(np.mean(val_probs.argmax(1) == val_labels)),
              **pseudo_label_report(pool, probs, chosen, classes, true_class)}
    return {"keys": [pool[i] for i in chosen], "targets": np.round(targets, 6).tolist(), "report": report}


# --- the student -------------------------------------------------------------------------------------------------


def mixup(x, p, alpha: float, g):
    """MixUp (Zhang et al. 2018) within a batch: each photo and its target blended with another's,
    by a weight drawn from Beta(alpha, alpha) per photo (the larger weight on the photo itself).

    `g` is a `tf.random.Generator`, made outside any `tf.data` function.
    """
    import tensorflow as tf

    n = tf.shape(x)[0]
    seeds = g.make_seeds(2)  # fresh seeds for every batch
    a = tf.random.stateless_gamma([n], seeds[:, 0], alpha)
    b = tf.random.stateless_gamma([n], seeds[:, 1], alpha)
    lam = tf.maximum(a / (a + b), b / (a + b))  # (B,) in [0.5, 1]
    other = tf.argsort(g.uniform([n]))  # a random partner for every photo
    x = lam[:, None, None, None] * x + (1 - lam[:, None, None, None]) * tf.gather(x, other)
    p = lam[:, None] * p + (1 - lam[:, None]) * tf.gather(p, other)
    return x, p


def dataset(labelled, pseudo, labelled_fraction: float, batch_size: int, augment, rotation: bool, seed: int,
            mixup_alpha: float = 0.0):
    """Endless trainer batches mixing labelled and pseudo-labelled (pixels, target probabilities) photos.

    `labelled_fraction` of the photos of a batch are labelled, on average; with `mixup_alpha`
    the augmented batch is blended by `mixup`. Yields `({"labelled": x}, {"breed": p})`, and
    with `rotation` also `rotated`/`rotation`: the four rotations of the batch, (4*B, S, S, 3).
    """
    import tensorflow as tf

    from ssl_keras import rotations

    mixed = tf.data.Dataset.sample_from_datasets([labelled, pseudo], [labelled_fraction, 1 - labelled_fraction],
                                                 seed=seed)
    ds = mixed.batch(batch_size, drop_remainder=True)
    if augment is not None:
        ds = ds.map(lambda x, p: (augment(x, training=True), p), num_parallel_calls=tf.data.AUTOTUNE)
    if mixup_alpha:
        g = tf.random.Generator.from_seed(seed)
        ds = ds.map(lambda x, p: mixup(x, p, mixup_alpha, g), num_parallel_calls=tf.data.AUTOTUNE)

    def to_trainer(x, p):
        if not rotation:
            return {"labelled": x}, {"breed": p}
        rotated, k = rotations.rotate_batch(x)
        return {"labelled": x, "rotated": rotated}, {"breed": p, "rotation": k}

    return ds.map(to_trainer, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def train_student(student, model_cfg, image_size, method_cfg, batches, val, *, steps_per_epoch, stage_dir,
                  photos=None, resume=False, verbose=1, log=print, clock=None) -> dict:
    """Trains `student` on mixed batches (`dataset`) with soft-target cross-entropy (+ rotation loss).

    With the rotation loss, BatchNorm's moving statistics are re-estimated on `photos` (endless
    batches of upright photos) before each validation, as the rotated views drag them.

    Returns:
        The stage's history, as columns.
    """
    from ssl_keras import models, train

    rotation = method_cfg.rotation_weight > 0
    trainer = models.build_trainer(student, model_cfg, image_size, rotation=rotation)
    loss = {"breed": "categorical_crossentropy"}
    weights = {"breed": 1.0}
    metrics = {"breed": ["categorical_accuracy"]}
    if rotation:
        loss["rotation"] = "sparse_categorical_crossentropy"
        weights["rotation"] = method_cfg.rotation_weight
    return train.fit(trainer, batches, val, method_cfg.train, stage_dir, steps_per_epoch=steps_per_epoch,
                     resume=resume, keep=student, loss=loss, loss_weights=weights, metrics=metrics, verbose=verbose,
                     log=log, clock=clock, before_validation=None if not (rotation and photos is not None)
                     else lambda m: train.recalibrate_batchnorm(m, photos))


def classifiers(cfg) -> list[Classifier]:
    """The student of the best round (each round's student is in `self_training/round<r>/`)."""
    return [Classifier("self_training", "self_training", "self-training", "self_training")]


def stage(run) -> dict:
    """Rounds of pseudo-labels from the best classifier so far, each training a student."""
    from ssl_keras import data

    if (done := run.stage_done("self_training")) is not None:
        run.log("[self_training] already finished; skipping (--resume).")
        return done
    cfg, mc = run.cfg, run.cfg.self_training
    d, classes, pool = cfg.data, run.classes, run.pool
    start = time.time()
    true_class = _true_class(run)
    pretext_model = classifier_stage.pretext_model(run) if mc.init == "pretext" else None
    rounds, students = [], []
    for r in range(1, mc.rounds + 1):
        name = os.path.join("self_training", f"round{r}")
        teacher = classifier_stage.best_so_far(run, "self_training", extra=students)
        if teacher is None:
            raise ValueError("Self-training needs a trained classifier as its teacher. Run `baseline` first.")
        members = _teachers(run, mc, extra=students)
        labels_path = run.path(name, "pseudo_labels.json")
        if run.resume and os.path.exists(labels_path):
            chosen = files.read_json(labels_path)
        else:
            chosen = _pseudo_labels(run, members, pool, classes, mc, true_class)
            os.makedirs(run.path(name), exist_ok=True)
            files.write_json(labels_path, chosen)
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
            batches = dataset(labelled, pseudo, mc.labelled_fraction, d.batch_size,
                              data.augmenter(mc.train, cfg.seed), mc.rotation_weight > 0, cfg.seed,
                              mixup_alpha=mc.mixup)
            steps = math.ceil((len(lab_keys) + len(chosen["keys"])) / d.batch_size)
            return train_student(model, cfg.model, d.image_size, mc, batches, run.dataset("val"),
                                 steps_per_epoch=steps, stage_dir=stage_dir, photos=classifier_stage.pool_photos(run),
                                 resume=run.resume, verbose=run.verbose, log=run.log, clock=run.clock)

        freeze = "none" if mc.init == "scratch" else classifier_stage.method_freeze(cfg)
        student = classifier_stage.run_stage(run, name, mc.init, freeze, fit, pretext=pretext_model,
                                             teacher=teacher if mc.init == "teacher" else None, pseudo_labels=info)
        students.append(name)
        rounds.append({"round": r, **info, "student_val_accuracy": student["best_val_accuracy"],
                       "student_val_accuracy_last": student["val_accuracy_last"]})
    best = max(students, key=lambda n: classifier_stage.val_score(run.stage_info(n)))
    for f in ("best.keras", "best.json", "final.keras", "history.csv", "curves.png"):
        files.copy(run.path(best, f), run.path("self_training", f))
    kept = run.stage_info(best)
    return run.finish_stage("self_training", start, **{k: kept[k] for k in (
        "epochs", "best_val_accuracy", "best_epoch", "val_accuracy_last", "weights_copied", "init", "freeze",
        "trainable", "non_trainable")}, best_round=int(best.rsplit("round", 1)[1]), rounds=rounds)


METHOD = Method("self_training", stage, classifiers, SelfTrainingConfig)
