"""data.py: the tf.data pipelines (shapes, order, rotations, augmentation)."""

from collections import Counter

import numpy as np
import pytest

from ssl_keras import data, preprocessing, sources
from ssl_keras.config import StageConfig

S = 24  # image size for the pipeline tests


def _decode_all(source, keys, size=S):
    resize = preprocessing.resizing(size)
    ds = source.dataset(keys, [0] * len(keys)).map(lambda b, y: preprocessing.decode_resized(b, resize))
    return list(ds.as_numpy_iterator())


# --- pipelines -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_items(image_folder):
    """[[key, label], ...] of the readable photos of beagle (0) and samoyed (1), odd files included."""
    keys = [k for k in image_folder.photos if not k.startswith("pug/")] + list(image_folder.odd.values())
    return [[k, 0 if k.startswith("beagle/") else 1] for k in sorted(keys)]


def test_labelled_dataset_shapes_dtypes_and_order(image_folder, good_items):
    source = sources.ImageFolder(image_folder.root)
    batches = list(data.labelled_dataset(source, good_items, S, 4).as_numpy_iterator())
    assert [len(y) for _, y in batches] == [4, 4, 4, 3]
    for x, y in batches:
        assert x.dtype == np.float32 and x.shape[1:] == (S, S, 3)
        assert x.min() >= 0 and x.max() <= 255 and x.max() > 1  # pixels 0..255, not rescaled
        assert y.dtype == np.int32
    assert np.concatenate([y for _, y in batches]).tolist() == [y for _, y in good_items]
    decoded = np.stack(_decode_all(source, [k for k, _ in good_items])).astype(np.float32)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches]), decoded)


def test_labelled_dataset_training_shuffles_the_same_photos(image_folder, good_items):
    source = sources.ImageFolder(image_folder.root)
    ds = data.labelled_dataset(source, good_items, S, 4, training=True, stage=StageConfig(augment=False), seed=0)
    y = np.concatenate([y for _, y in ds.as_numpy_iterator()])
    assert sorted(y.tolist()) == sorted(lab for _, lab in good_items)


def test_empty_datasets_are_refused(image_folder):
    source = sources.ImageFolder(image_folder.root)
    with pytest.raises(ValueError, match="No photos"):
        data.labelled_dataset(source, [], S, 4)
    with pytest.raises(ValueError, match="No unlabelled photos"):
        data.pretext_dataset(source, [], S, 4)


def test_pretext_dataset_makes_four_rotations_per_photo(image_folder):
    source = sources.ImageFolder(image_folder.root)
    keys = image_folder.photos[:6]
    batches = list(data.pretext_dataset(source, keys, S, 4).as_numpy_iterator())
    assert [len(x) for x, _ in batches] == [16, 8]  # B photos -> 4B samples
    for x, y in batches:
        b = len(x) // 4
        assert x.dtype == np.float32 and x.shape[1:] == (S, S, 3)
        assert y.dtype == np.int32 and y.tolist() == [0] * b + [1] * b + [2] * b + [3] * b
        for k in range(4):
            np.testing.assert_array_equal(x[k * b:(k + 1) * b], np.rot90(x[:b], k, axes=(1, 2)))
    originals = np.stack(_decode_all(source, keys)).astype(np.float32)
    np.testing.assert_array_equal(np.concatenate([x[:len(x) // 4] for x, _ in batches]), originals)


# --- augmentation: horizontal flips only ---------------------------------------------------------------------


def test_augmenter_layers():
    import keras

    assert data.augmenter(StageConfig(augment=False), 0) is None
    assert data.augmenter(StageConfig(flip=False, translate=0.0, zoom=0.0), 0) is None
    aug = data.augmenter(StageConfig(), 0)
    kinds = [type(layer) for layer in aug.layers]
    assert kinds == [keras.layers.RandomFlip, keras.layers.RandomTranslation, keras.layers.RandomZoom]
    assert aug.layers[0].mode == "horizontal"


def _match(image, candidates):
    """Index of the candidate `image` equals exactly, else None."""
    for i, c in enumerate(candidates):
        if image.shape == c.shape and np.array_equal(image, c):
            return i
    return None


def test_augmentation_flips_horizontally_never_vertically(image_folder, good_items):
    source = sources.ImageFolder(image_folder.root)
    originals = np.stack(_decode_all(source, [k for k, _ in good_items])).astype(np.float32)
    mirrors, upside_down = originals[:, :, ::-1], originals[:, ::-1]
    stage = StageConfig(flip=True, translate=0.0, zoom=0.0)
    ds = data.labelled_dataset(source, good_items, S, 5, training=True, stage=stage, seed=1)
    seen = Counter()
    for _ in range(3):  # three epochs
        for x, _ in ds.as_numpy_iterator():
            for image in x:
                assert _match(image, upside_down) is None or _match(image, originals) is not None
                if _match(image, originals) is not None:
                    seen["same"] += 1
                else:
                    assert _match(image, mirrors) is not None, "augmented image is neither the photo nor its mirror"
                    seen["mirrored"] += 1
    assert seen["same"] > 0 and seen["mirrored"] > 0


def test_pretext_augmentation_happens_before_the_rotations(image_folder):
    source = sources.ImageFolder(image_folder.root)
    keys = image_folder.photos[:8]
    originals = np.stack(_decode_all(source, keys)).astype(np.float32)
    stage = StageConfig(flip=True, translate=0.0, zoom=0.0)
    for x, y in data.pretext_dataset(source, keys, S, 8, training=True, stage=stage, seed=3).as_numpy_iterator():
        b = len(x) // 4
        for image in x[:b]:
            assert _match(image, originals) is not None or _match(image, originals[:, :, ::-1]) is not None
        for k in range(4):  # every rotation is of the same (possibly mirrored) photo: labels stay true
            np.testing.assert_array_equal(x[k * b:(k + 1) * b], np.rot90(x[:b], k, axes=(1, 2)))


def test_strong_augmentation_changes_photos_within_the_pixel_range_in_tf_data(image_folder, good_items):
    import tensorflow as tf

    source = sources.ImageFolder(image_folder.root)
    originals = np.stack(_decode_all(source, [k for k, _ in good_items])).astype(np.float32)
    aug = data.strong_augmenter(2, 0.5, seed=0)
    ds = tf.data.Dataset.from_tensors(originals).repeat(4).map(lambda x: aug(x, training=True),
                                                              num_parallel_calls=tf.data.AUTOTUNE)
    batches = list(ds.as_numpy_iterator())
    for x in batches:
        assert x.shape == originals.shape and x.dtype == np.float32
        assert x.min() >= 0 and x.max() <= 255
        assert np.abs(x - originals).mean(axis=(1, 2, 3)).min() > 1  # every photo is changed (Cutout at least)
    assert not np.array_equal(batches[0], batches[1])  # each batch draws anew
