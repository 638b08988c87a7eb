"""Rotation as an auxiliary loss (S4L-Rotation, Zhai et al. 2019, google-research/s4l).

One backbone, two heads. Each step sees a labelled batch and an unlabelled batch;
the loss is the breed loss on the labelled batch plus `weight` x the rotation loss
on the four rotations of both batches (labelled photos are also photos).
"""

from __future__ import annotations


from ssl_keras import models, rotations, train, transfer


def dataset(labelled, unlabelled):
    """Endless trainer batches from endless labelled (x, y) batches and unlabelled x batches.

    Yields `({"labelled": x, "rotated": r}, {"breed": y, "rotation": k})`, where `r` holds
    the four rotations of the labelled and the unlabelled photos, (4*(B+U), S, S, 3).
    """
    import tensorflow as tf


    def join(batch, unlabelled_x):
        x, y = batch
        rotated, k = rotations.rotate_batch(tf.concat([x, unlabelled_x], axis=0))  # (4*(B+U), S, S, 3)
        return {"labelled": x, "rotated": rotated}, {"breed": y, "rotation": k}

    ds = tf.data.Dataset.zip((labelled, unlabelled)).map(join, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def train_classifier(classifier, model_cfg, image_size, method_cfg, labelled, unlabelled, val, *, steps_per_epoch,
                     stage_dir, pretext=None, photos=None, resume=False, verbose=1, log=print, clock=None) -> dict:
    """Trains `classifier` with the breed and rotation losses; keeps its best and final epochs in `stage_dir`.

    Args:
        classifier: a breed classifier (`models.build_classifier`), its backbone already
            copied from the pretext model when starting from it.
        model_cfg: the `ModelConfig` it was built with.
        image_size: the pipeline's square size.
        method_cfg: a `RotationAuxConfig` (loss weight, training stage).
        labelled: endless batches of (pixels, class index), augmented.
        unlabelled: endless batches of pixels.
        val: batches of (pixels, class index) that pick the best epoch.
        steps_per_epoch: steps in one epoch.
        stage_dir: where the stage's files go.
        pretext: the rotation model whose head starts the rotation head (None: a fresh head).
        photos: endless batches of upright photos on which BatchNorm's moving statistics are re-estimated
            before each validation (the rotated views, 8x the labelled batch, drag them;
            `train.recalibrate_batchnorm`).
        clock: the run's `budget.Clock`, told how fast the fit goes (`train.fit`); None: not timed.

    Returns:
        The stage's history, as columns.
    """
    trainer = models.build_trainer(classifier, model_cfg, image_size, rotation=True)
    if pretext is not None:
        transfer.copy_head(pretext, trainer, "rotation")
    return train.fit(trainer, dataset(labelled, unlabelled), val, method_cfg.train, stage_dir,
                     steps_per_epoch=steps_per_epoch, resume=resume, keep=classifier,
                     loss={"breed": "sparse_categorical_crossentropy", "rotation": "sparse_categorical_crossentropy"},
                     loss_weights={"breed": 1.0, "rotation": method_cfg.weight},
                     metrics={"breed": ["accuracy"], "rotation": ["accuracy"]}, verbose=verbose, log=log, clock=clock,
                     before_validation=None if photos is None else lambda m: train.recalibrate_batchnorm(m, photos))
