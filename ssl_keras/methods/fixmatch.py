"""Consistency training in the manner of FixMatch (Sohn et al. 2020).

An unlabelled photo is seen twice, weakly (flip, shift) and strongly (RandAugment)
augmented. Where the classifier's top breed on the weak view is confident enough,
it is the target for the strong view. The loss is the breed loss on a labelled
batch plus `weight` x that masked cross-entropy averaged over the unlabelled batch.
"""

from __future__ import annotations

import keras
from keras import ops

from ssl_keras import models, train


class ConfidentCrossEntropy(keras.losses.Loss):
    """FixMatch's unlabelled loss on `consistency` outputs (U, 2C): [weak probabilities | strong probabilities].

    Per photo: the cross-entropy of the strong view against the weak view's top breed,
    times 1 where the weak view's confidence is at least `threshold`, else 0.
    """

    def __init__(self, threshold: float, num_classes: int, name="confident_cross_entropy"):
        super().__init__(name=name)
        self.threshold, self.num_classes = threshold, num_classes

    def call(self, y_true, y_pred):
        weak, strong = y_pred[:, : self.num_classes], y_pred[:, self.num_classes:]  # (U, C) each
        mask = ops.cast(ops.max(weak, axis=1) >= self.threshold, strong.dtype)  # (U,)
        return mask * keras.losses.sparse_categorical_crossentropy(ops.argmax(weak, axis=1), strong)


class ConfidentFraction(keras.metrics.Mean):
    """The fraction of unlabelled photos whose weak view passes the threshold (FixMatch's "mask rate")."""

    def __init__(self, threshold: float, num_classes: int, name="confident"):
        super().__init__(name=name)
        self.threshold, self.num_classes = threshold, num_classes

    def update_state(self, y_true, y_pred, sample_weight=None):
        weak = y_pred[:, : self.num_classes]
        return super().update_state(ops.cast(ops.max(weak, axis=1) >= self.threshold, "float32"))


def dataset(labelled, unlabelled, strong_ops: int, strong_factor: float, seed: int):
    """Endless trainer batches from endless labelled (x, y) batches and unlabelled x batches.

    Yields `({"labelled": x, "weak": w, "strong": s}, {"breed": y, "consistency": 0})`.
    """
    import tensorflow as tf

    from ssl_keras import data

    weak = keras.Sequential([keras.layers.RandomFlip("horizontal", seed=seed),
                             keras.layers.RandomTranslation(0.125, 0.125, fill_mode="reflect", seed=seed)],
                            name="weak_augment")
    strong = data.strong_augmenter(strong_ops, strong_factor, seed)

    def join(batch, u):
        x, y = batch
        inputs = {"labelled": x, "weak": weak(u, training=True), "strong": strong(u, training=True)}
        return inputs, {"breed": y, "consistency": tf.zeros(tf.shape(u)[:1])}

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
    trainer = models.build_trainer(classifier, model_cfg, image_size, consistency=True)
    loss = ConfidentCrossEntropy(method_cfg.threshold, num_classes)
    return train.fit(trainer, dataset(labelled, unlabelled, method_cfg.strong_ops, method_cfg.strong_factor, seed),
                     val, method_cfg.train, stage_dir, steps_per_epoch=steps_per_epoch, resume=resume,
                     keep=classifier, loss={"breed": "sparse_categorical_crossentropy", "consistency": loss},
                     loss_weights={"breed": 1.0, "consistency": method_cfg.weight},
                     metrics={"breed": ["accuracy"],
                              "consistency": [ConfidentFraction(method_cfg.threshold, num_classes)]},
                     verbose=verbose, log=log, clock=clock,
                     before_validation=None if photos is None else lambda m: train.recalibrate_batchnorm(m, photos))
