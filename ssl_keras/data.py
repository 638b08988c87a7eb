"""`tf.data` pipelines: photos of a source in, batches for training and scoring out.

Order (simclr `tf2/data.py`): read -> decode/resize (parallel, `ssl_keras.preprocessing`)
-> cache -> shuffle -> batch -> batched transforms (augmentation, rotations) -> prefetch.
The cache holds float32 pixels at the model's size, exactly what a saved model computes
from the same file. Knows nothing of models.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from ssl_keras import preprocessing, rotations

AUTOTUNE = tf.data.AUTOTUNE


def augmenter(stage, seed: int):
    """Random flip (horizontal only), translation and zoom from a `StageConfig`, or None."""
    if not stage.augment:
        return None
    layers = []
    if stage.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if stage.translate:
        layers.append(keras.layers.RandomTranslation(stage.translate, stage.translate,
                                                     fill_mode="reflect", seed=seed))
    if stage.zoom:
        layers.append(keras.layers.RandomZoom(stage.zoom, fill_mode="reflect", seed=seed))
    return keras.Sequential(layers, name="augment") if layers else None


def strong_augmenter(num_ops: int, factor: float, seed: int, groups: int = 8):
    """FixMatch's strong augmentation for batches in `tf.data`: flip and shift, then `num_ops` operations
    drawn from RandAugment's list (colour, contrast, solarise, posterise, sharpness, shear, rotation, ...)
    at strength `factor`, then Cutout (a random rectangle erased).

    The operations are drawn for each of `groups` slices of a batch, each photo with its own random
    strength: a batch mixes several operations, so its BatchNorm statistics do not swing from one
    batch to the next. Keras' `RandAugment` draws them a photo and costs ~7x more here (1.7 s for 448
    photos of 64 px on two cores, as long as the training step itself).
    """
    rng = (0, 255)
    choices = [
        keras.layers.AutoContrast(value_range=rng),
        keras.layers.Equalization(value_range=rng),
        keras.layers.Solarization(threshold_factor=(1 - factor, 1.0), value_range=rng, seed=seed),
        keras.layers.RandomPosterization(factor=(max(1, round(8 - 4 * factor)), 8), value_range=rng, seed=seed),
        keras.layers.RandomContrast(factor, seed=seed),
        keras.layers.RandomBrightness(factor / 2, value_range=rng, seed=seed),
        keras.layers.RandomSaturation(factor, value_range=rng, seed=seed),
        keras.layers.RandomSharpness(factor, value_range=rng, seed=seed),
        keras.layers.RandomShear(factor / 2, factor / 2, fill_mode="reflect", seed=seed),
        keras.layers.RandomRotation(factor / 6, fill_mode="reflect", seed=seed),
    ]
    flip = keras.layers.RandomFlip("horizontal", seed=seed)
    shift = keras.layers.RandomTranslation(0.125, 0.125, fill_mode="reflect", seed=seed)
    cutout = keras.layers.RandomErasing(factor=1.0, scale=(0.05, 0.25), value_range=rng, seed=seed)
    draw = tf.random.Generator.from_seed(seed)

    def one_group(x):
        for _ in range(num_ops):
            op = draw.uniform([], 0, len(choices), tf.int32)
            x = tf.switch_case(op, [lambda layer=layer: tf.clip_by_value(layer(x, training=True), 0, 255)
                                    for layer in choices])
        return x

    def augment(x, training=True):
        x = shift(flip(x, training=True), training=True)
        n = tf.shape(x)[0]
        bounds = tf.linspace(0.0, tf.cast(n, tf.float32), groups + 1)
        bounds = tf.cast(tf.round(bounds), tf.int32)
        # A loop over the groups, so the graph holds each operation once (`tf.data` traces it in seconds; a
        # group after group written out, 8 times as many layer calls, took 5 to 10 s to trace) and draws the
        # same operations in the same order.
        parts = tf.TensorArray(x.dtype, size=groups, infer_shape=False, element_shape=[None, *x.shape[1:]])
        _, parts = tf.while_loop(lambda g, _: g < groups,
                                 lambda g, parts: (g + 1, parts.write(g, one_group(x[bounds[g]:bounds[g + 1]]))),
                                 (tf.constant(0), parts))
        return cutout(parts.concat(), training=True)

    return augment


def photos(source, keys, labels, image_size) -> tf.data.Dataset:
    """(float32 (S, S, 3) pixels 0..255, label) of each key, decoded and resized once, then cached."""
    resize = preprocessing.resizing(image_size)
    ds = source.dataset(keys, labels)
    ds = ds.map(lambda b, y: (preprocessing.decode_resized(b, resize), y), num_parallel_calls=AUTOTUNE)
    return ds.cache()


def _batches(ds, n, batch_size, *, training, seed, augment=None, repeat=False, drop_remainder=False):
    if training:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if augment is not None:
        ds = ds.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=AUTOTUNE)
    return ds


def labelled_dataset(source, items, image_size, batch_size, *, training=False, stage=None, seed=0,
                     repeat=False):
    """Batches of (float32 pixels 0..255, class index) for `items` = [[key, label], ...].

    With `training` the photos are shuffled and, by `stage`, augmented.
    """
    if not items:
        raise ValueError("No photos to build a data set from.")
    keys, labels = zip(*items)
    aug = augmenter(stage, seed) if (training and stage is not None) else None
    ds = _batches(photos(source, keys, labels, image_size), len(items), batch_size, training=training, seed=seed,
                  augment=aug, repeat=repeat)
    return ds.prefetch(AUTOTUNE)


def unlabelled_dataset(source, keys, image_size, batch_size, *, stage=None, seed=0, repeat=True):
    """Endless shuffled batches of float32 pixels (no labels) of unlabelled `keys`, augmented by `stage`."""
    if not keys:
        raise ValueError("No unlabelled photos.")
    aug = augmenter(stage, seed) if stage is not None else None
    ds = _batches(photos(source, keys, [0] * len(keys), image_size), len(keys), batch_size, training=True,
                  seed=seed, augment=aug, repeat=repeat, drop_remainder=True)
    return ds.map(lambda x, _: x, num_parallel_calls=AUTOTUNE)


def pretext_dataset(source, keys, image_size, batch_size, *, training=False, stage=None, seed=0,
                    device=None):
    """Batches of (4*B rotated photos, rotation labels 0..3) from unlabelled `keys`.

    Order: read -> decode/resize (parallel) -> cache -> shuffle -> batch ->
    augment (never a vertical flip: it would corrupt the labels) -> rotate the
    whole batch in one step -> prefetch. With `device` (e.g. "/GPU:0") the
    batches are copied there first and rotated on it.
    """
    if not keys:
        raise ValueError("No unlabelled photos for the rotation task.")
    aug = augmenter(stage, seed) if (training and stage is not None) else None
    ds = _batches(photos(source, keys, [0] * len(keys), image_size), len(keys), batch_size, training=training,
                  seed=seed, augment=aug)
    ds = ds.map(lambda x, _: x)
    if device:
        ds = ds.apply(tf.data.experimental.copy_to_device(device))
        with tf.device(device):
            return ds.map(rotations.rotate_batch).prefetch(AUTOTUNE)
    return ds.map(rotations.rotate_batch, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def examples(source, keys, targets, image_size, *, seed=0) -> tf.data.Dataset:
    """Endless shuffled (float32 pixels, target) pairs, one photo at a time (to mix before batching)."""
    if not keys:
        raise ValueError("No photos to build a data set from.")
    ds = photos(source, keys, targets, image_size)
    return ds.shuffle(len(keys), seed=seed, reshuffle_each_iteration=True).repeat()
