"""Consistency training in the manner of FixMatch (Sohn et al. 2020).

An unlabelled photo is seen twice, weakly (flip, shift) and strongly (RandAugment)
augmented. Where the classifier's top breed on the weak view is confident enough,
it is the target for the strong view. The loss is the breed loss on a labelled
batch plus `weight` x that masked cross-entropy averaged over the unlabelled batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ssl_keras import classifier_stage
from ssl_keras.config_base import STUDENT_INITS, Classifier, Method, StageConfig, check


@dataclass(frozen=True)
class FixMatchConfig:
    """Consistency training in the manner of FixMatch (Sohn et al. 2020).

    Each step: the breed loss on a weakly augmented labelled batch, plus `weight` x the
    cross-entropy between the prediction on a strongly augmented (RandAugment) unlabelled photo
    and the top breed predicted on its weakly augmented view, counted only where that
    prediction's confidence is at least `threshold`. `ratio` unlabelled photos per labelled
    one. The classifier starts from `init` (`teacher`: the run's best classifier so far).
    An epoch is a pass over the unlabelled pool. The threshold was chosen on validation
    (docs/experiments.md): FixMatch's 0.95 lets 0.2 % of the pool through at this teacher's
    confidence, 0.7 about 9 %.
    `align`: distribution alignment (ReMixMatch, Berthelot et al. 2020), on each unlabelled batch:
    the weak view's probabilities are divided by their mean over the batch and renormalised, so
    pseudo-labels no longer pile up on the breeds the classifier already favours (uniform prior).
    `bn_batches`: batches of the pool's photos that BatchNorm's moving statistics are re-estimated on before each
    validation (`train.recalibrate_batchnorm`).
    `strong_share`: the share of each unlabelled batch whose strong views go through the classifier, forward and
    back: those whose weak view is the most confident (`models.MostConfident`). The others are below the
    threshold whenever fewer than that share pass it, so they add nothing to the loss but their pass; the loss is
    still averaged over the whole batch. 1: every strong view, as FixMatch.
    `soft`: SoftMatch's truncated Gaussian weight (Chen et al. 2023) in place of the threshold: a strong view counts
    fully where its weak view's confidence is at least the unlabelled batch's mean confidence mu, and by
    exp(-(confidence - mu)^2 / (2 var / 4)) below it (var: the batch's variance of the confidence; SoftMatch's
    n_sigma = 2). SoftMatch keeps mu and var as averages over steps (momentum 0.999, from 1/C and 1); a run of a
    few hundred steps would never move them from there, so they are the batch's own here.
    """

    threshold: float = 0.7
    ratio: int = 7
    weight: float = 1.0
    strong_ops: int = 2
    strong_factor: float = 0.5
    init: str = "teacher"
    align: bool = False
    bn_batches: int = 50
    strong_share: float = 1.0
    soft: bool = False
    train: StageConfig = field(default_factory=lambda: StageConfig(epochs=20, learning_rate=3e-4))

    def __post_init__(self):
        check(0.0 < self.threshold < 1.0, f"`fixmatch.threshold` must be in (0, 1). Received: {self.threshold}")
        check(self.ratio >= 1, f"`fixmatch.ratio` must be >= 1. Received: {self.ratio}")
        check(self.weight >= 0, f"`fixmatch.weight` must be >= 0. Received: {self.weight}")
        check(self.strong_ops >= 1, f"`fixmatch.strong_ops` must be >= 1. Received: {self.strong_ops}")
        check(0.0 < self.strong_factor <= 1.0,
              f"`fixmatch.strong_factor` must be in (0, 1]. Received: {self.strong_factor}")
        check(self.bn_batches >= 1, f"`fixmatch.bn_batches` must be >= 1. Received: {self.bn_batches}")
        check(0.0 < self.strong_share <= 1.0,
              f"`fixmatch.strong_share` must be in (0, 1]. Received: {self.strong_share}")
        check(self.strong_share == 1.0 or not self.align,
              "`fixmatch.strong_share` < 1 keeps the most confident weak views before `fixmatch.align` could "
              f"re-weigh them: use one or the other. Received: strong_share={self.strong_share}, align=True")
        check(self.strong_share == 1.0 or not self.soft,
              "`fixmatch.soft` weighs every strong view of the batch, so `fixmatch.strong_share` must be 1. "
              f"Received: strong_share={self.strong_share}, soft=True")
        check(self.init in STUDENT_INITS, f"`fixmatch.init` must be one of {STUDENT_INITS}. Received: {self.init!r}")


def weak_probabilities(y_pred, num_classes: int, align: bool = False):
    """The weak views' probabilities (U, C) from `consistency` outputs (U, 2C); with `align`, divided by
    their mean over the batch (each breed's share of the batch's predictions) and renormalised."""
    from keras import ops

    weak = y_pred[:, :num_classes]
    if align:
        weak = weak / (ops.mean(weak, axis=0, keepdims=True) + 1e-6)
        weak = weak / ops.sum(weak, axis=1, keepdims=True)
    return weak


def weights(weak, threshold: float, soft: bool = False):
    """Each unlabelled photo's weight (U,) in the unlabelled loss, from its weak view's probabilities (U, C): 1 where
    the top probability is at least `threshold`, else 0; with `soft`, SoftMatch's weight (`FixMatchConfig.soft`)."""
    from keras import ops

    confidence = ops.max(weak, axis=1)
    if not soft:
        return ops.cast(confidence >= threshold, weak.dtype)
    mu, var = ops.mean(confidence), ops.var(confidence)
    return ops.exp(-ops.square(ops.minimum(confidence - mu, 0.0)) / (2 * var / 4 + 1e-8))


def confident_cross_entropy(threshold: float, num_classes: int, align: bool = False, kept: float = 1.0,
                            soft: bool = False):
    """FixMatch's unlabelled loss, on `consistency` outputs (k, 2C): [weak probabilities | strong probabilities].

    Returns:
        A Keras loss function `(y_true, y_pred) -> (k,)`: per photo, the cross-entropy of the strong view
        against the weak view's top breed, times its weight (`weights`: 1 where the weak view's confidence is at
        least `threshold`, else 0; with `soft`, SoftMatch's), times `kept` (k / U: the share of the U photos of
        the batch whose views are there, so that Keras' mean over the k is the mean over the batch). `align`: see
        `weak_probabilities`.
    """
    from keras import losses, ops

    def confident_cross_entropy(y_true, y_pred):
        weak, strong = weak_probabilities(y_pred, num_classes, align), y_pred[:, num_classes:]  # (k, C) each
        mask = weights(weak, threshold, soft) * kept  # (k,)
        return mask * losses.sparse_categorical_crossentropy(ops.argmax(weak, axis=1), strong)

    return confident_cross_entropy


def confident_fraction(threshold: float, num_classes: int, align: bool = False, kept: float = 1.0,
                       soft: bool = False):
    """A metric on `consistency` outputs: the mean weight of the batch's unlabelled photos (`weights`): the fraction
    whose weak view passes the threshold (FixMatch's "mask rate"; with `kept` < 1, at most `kept`), or with `soft`
    SoftMatch's mean weight."""
    import keras

    def confident(y_true, y_pred):
        return kept * weights(weak_probabilities(y_pred, num_classes, align), threshold, soft)

    return keras.metrics.MeanMetricWrapper(confident, name="confident")


def strong_rows(method_cfg, unlabelled_batch: int) -> int:
    """How many strong views of each unlabelled batch go through the classifier (all: `unlabelled_batch`)."""
    return max(1, round(method_cfg.strong_share * unlabelled_batch))


def compile_args(method_cfg, num_classes: int, unlabelled_batch: int | None = None) -> dict:
    """The trainer's `loss`, `loss_weights` and `metrics` (as `train.compile_model` and `train.fit` take them)
    for a `FixMatchConfig` and its `unlabelled_batch` (needed with `strong_share` < 1): the breed's
    cross-entropy and accuracy, and the confident cross-entropy times `weight` with its confident fraction."""
    t, align, soft = method_cfg.threshold, method_cfg.align, method_cfg.soft
    kept = strong_rows(method_cfg, unlabelled_batch) / unlabelled_batch if unlabelled_batch else 1.0
    return {"loss": {"breed": "sparse_categorical_crossentropy",
                     "consistency": confident_cross_entropy(t, num_classes, align, kept, soft)},
            "loss_weights": {"breed": 1.0, "consistency": method_cfg.weight},
            "metrics": {"breed": ["accuracy"],
                        "consistency": [confident_fraction(t, num_classes, align, kept, soft)]}}


def build_trainer(classifier, model_cfg, image_size, num_classes, method_cfg, unlabelled_batch: int):
    """FixMatch's trainer around `classifier` for unlabelled batches of `unlabelled_batch` photos.

    Returns:
        (trainer, its `compile_args`, the rows of its `consistency` output: what `dataset` takes as `rows`).
    """
    from ssl_keras import models

    rows = strong_rows(method_cfg, unlabelled_batch)
    trainer = models.build_trainer(classifier, model_cfg, image_size, consistency=True,
                                   strong_rows=rows if rows < unlabelled_batch else None)
    return trainer, compile_args(method_cfg, num_classes, unlabelled_batch), rows


def dataset(labelled, unlabelled, strong_ops: int, strong_factor: float, seed: int, rows: int):
    """Endless trainer batches from endless labelled (x, y) batches and unlabelled x batches.

    Yields `({"labelled": x, "weak": w, "strong": s}, {"breed": y, "consistency": 0})`, the zeros as many as
    the `consistency` output's `rows` (`build_trainer`'s).
    """
    import keras
    import tensorflow as tf

    from ssl_keras import data

    weak = keras.Sequential([keras.layers.RandomFlip("horizontal", seed=seed),
                             keras.layers.RandomTranslation(0.125, 0.125, fill_mode="reflect", seed=seed)],
                            name="weak_augment")
    strong = data.strong_augmenter(strong_ops, strong_factor, seed)

    def join(batch, u):
        x, y = batch
        inputs = {"labelled": x, "weak": weak(u, training=True), "strong": strong(u, training=True)}
        return inputs, {"breed": y, "consistency": tf.zeros([rows])}

    ds = tf.data.Dataset.zip((labelled, unlabelled)).map(join, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def train_classifier(classifier, model_cfg, image_size, num_classes, method_cfg, labelled, unlabelled, val, *,
                     steps_per_epoch, stage_dir, photos=None, seed=0, resume=False, verbose=1, log=print,
                     clock=None) -> dict:
    """Trains `classifier` with FixMatch's two losses; keeps its best and final epochs in `stage_dir`.

    Args:
        classifier: the breed classifier to train (already initialised).
        model_cfg, image_size, num_classes: what it was built with.
        method_cfg: a `FixMatchConfig`.
        labelled: endless batches of (pixels, class index), weakly augmented.
        unlabelled: endless batches of `ratio` x the labelled batch size of pixels, not augmented.
        val: batches of (pixels, class index) that pick the best epoch.
        photos: endless batches of photos (not augmented) on which BatchNorm's moving statistics are
            re-estimated before each validation: the strongly augmented views drag them away from
            what photos look like (`train.recalibrate_batchnorm`).
        clock: the run's `budget.Clock`, told how fast the fit goes (`train.fit`); None: not timed.

    Returns:
        The stage's history, as columns (`consistency_confident`: the fraction above the threshold).
    """
    from ssl_keras import train

    batch = unlabelled.element_spec.shape[0]  # static: the batches drop their remainder
    trainer, args, rows = build_trainer(classifier, model_cfg, image_size, num_classes, method_cfg, batch)
    return train.fit(trainer, dataset(labelled, unlabelled, method_cfg.strong_ops, method_cfg.strong_factor, seed,
                                      rows), val, method_cfg.train, stage_dir, steps_per_epoch=steps_per_epoch,
                     resume=resume, keep=classifier, **args, verbose=verbose, log=log, clock=clock,
                     before_validation=None if photos is None
                     else lambda m: train.recalibrate_batchnorm(m, photos, method_cfg.bn_batches))


def classifiers(cfg) -> list[Classifier]:
    """The one classifier FixMatch trains."""
    return [Classifier("fixmatch", "fixmatch", "FixMatch", "fixmatch")]


def stage(run) -> dict:
    """Consistency between weak and strong views of the unlabelled photos, from the best classifier so far."""
    from ssl_keras import data

    cfg, mc = run.cfg, run.cfg.fixmatch
    d = cfg.data
    teacher = classifier_stage.best_so_far(run, "fixmatch") if mc.init == "teacher" else None
    if mc.init == "teacher" and teacher is None:
        raise ValueError("`fixmatch.init=teacher` needs a trained classifier. Run `baseline` first.")

    def fit(model, stage_dir):
        unlabelled = data.unlabelled_dataset(run.source, run.pool, d.image_size, mc.ratio * d.batch_size,
                                             seed=cfg.seed)
        return train_classifier(
            model, cfg.model, d.image_size, len(run.classes), mc,
            run.dataset("labelled", training=True, stage=mc.train, repeat=True), unlabelled, run.dataset("val"),
            steps_per_epoch=math.ceil(len(run.pool) / (mc.ratio * d.batch_size)), stage_dir=stage_dir,
            photos=classifier_stage.pool_photos(run), seed=cfg.seed, resume=run.resume, verbose=run.verbose,
            log=run.log, clock=run.clock)

    freeze = "none" if mc.init == "scratch" else classifier_stage.method_freeze(cfg)
    return classifier_stage.run_stage(
        run, "fixmatch", mc.init, freeze, fit,
        pretext=classifier_stage.pretext_model(run) if mc.init == "pretext" else None, teacher=teacher,
        threshold=mc.threshold, ratio=mc.ratio)


METHOD = Method("fixmatch", stage, classifiers, FixMatchConfig)
