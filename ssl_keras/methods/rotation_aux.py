"""Rotation as an auxiliary loss (S4L-Rotation, Zhai et al. 2019, google-research/s4l).

One backbone, two heads. Each step sees a labelled batch and an unlabelled batch;
the loss is the breed loss on the labelled batch plus `weight` x the rotation loss
on the four rotations of both batches (labelled photos are also photos).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ssl_keras import classifier_stage
from ssl_keras.config_base import Classifier, Method, StageConfig, check

STARTS = ("scratch", "pretext")


@dataclass(frozen=True)
class RotationAuxConfig:
    """Rotation as an auxiliary loss (S4L-Rotation): one backbone, a breed head and a rotation head.

    Each step: the breed loss on a labelled batch, plus `weight` x the rotation loss on the four
    rotations of that batch and of an unlabelled batch of `unlabelled_batch_size` photos.
    `starts` lists the runs to make: from a random backbone, from the pretext model (backbone and
    rotation head), or both. An epoch is a pass over the labelled photos.
    """

    starts: tuple[str, ...] = STARTS
    weight: float = 1.0
    unlabelled_batch_size: int = 0  # 0: the labelled batch size, as in S4L
    train: StageConfig = field(default_factory=lambda: StageConfig(epochs=60))

    def __post_init__(self):
        object.__setattr__(self, "starts", tuple(self.starts))
        check(self.starts and set(self.starts) <= set(STARTS) and len(set(self.starts)) == len(self.starts),
              f"`rotation_aux.starts` must list distinct values of {STARTS}. Received: {list(self.starts)}")
        check(self.weight >= 0, f"`rotation_aux.weight` must be >= 0. Received: {self.weight}")
        check(self.unlabelled_batch_size >= 0,
              f"`rotation_aux.unlabelled_batch_size` must be >= 0. Received: {self.unlabelled_batch_size}")


def dataset(labelled, unlabelled):
    """Endless trainer batches from endless labelled (x, y) batches and unlabelled x batches.

    Yields `({"labelled": x, "rotated": r}, {"breed": y, "rotation": k})`, where `r` holds
    the four rotations of the labelled and the unlabelled photos, (4*(B+U), S, S, 3).
    """
    import tensorflow as tf

    from ssl_keras import rotations

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
    from ssl_keras import models, train, transfer

    trainer = models.build_trainer(classifier, model_cfg, image_size, rotation=True)
    if pretext is not None:
        transfer.copy_head(pretext, trainer, "rotation")
    return train.fit(trainer, dataset(labelled, unlabelled), val, method_cfg.train, stage_dir,
                     steps_per_epoch=steps_per_epoch, resume=resume, keep=classifier,
                     loss={"breed": "sparse_categorical_crossentropy", "rotation": "sparse_categorical_crossentropy"},
                     loss_weights={"breed": 1.0, "rotation": method_cfg.weight},
                     metrics={"breed": ["accuracy"], "rotation": ["accuracy"]}, verbose=verbose, log=log, clock=clock,
                     before_validation=None if photos is None else lambda m: train.recalibrate_batchnorm(m, photos))


def _stage_dir(start: str) -> str:
    """The stage directory (and report.json key) of the classifier started from `start`."""
    return "rotation_aux" if start == "pretext" else "rotation_aux_scratch"


def classifiers(cfg) -> list[Classifier]:
    """One classifier a start of `rotation_aux.starts`."""
    return [Classifier(_stage_dir(start), _stage_dir(start), f"rotation loss, from {start}", "rotation_aux")
            for start in cfg.rotation_aux.starts]


def stage(run) -> dict:
    """Breed and rotation losses together on one backbone, from scratch and from the pretext backbone."""
    from ssl_keras import data

    cfg, mc = run.cfg, run.cfg.rotation_aux
    d = cfg.data
    out = {}
    for start in mc.starts:
        name = _stage_dir(start)
        pretext_model = classifier_stage.pretext_model(run) if start == "pretext" else None

        def fit(model, stage_dir, pretext_model=pretext_model):
            unlabelled = data.unlabelled_dataset(run.source, run.pool, d.image_size,
                                                 mc.unlabelled_batch_size or d.batch_size, stage=mc.train,
                                                 seed=cfg.seed)
            labelled = run.dataset("labelled", training=True, stage=mc.train, repeat=True)
            return train_classifier(
                model, cfg.model, d.image_size, mc, labelled, unlabelled, run.dataset("val"),
                steps_per_epoch=math.ceil(len(run.split["labelled"]) / d.batch_size), stage_dir=stage_dir,
                pretext=pretext_model, photos=classifier_stage.pool_photos(run), resume=run.resume,
                verbose=run.verbose, log=run.log, clock=run.clock)

        freeze = classifier_stage.method_freeze(cfg) if start == "pretext" else "none"
        out[name] = classifier_stage.run_stage(run, name, start, freeze, fit, pretext=pretext_model,
                                               rotation_weight=mc.weight)
    return out


METHOD = Method("rotation_aux", stage, classifiers, RotationAuxConfig)
