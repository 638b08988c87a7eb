"""rotations.py: exact pixels of the four rotations, eagerly and inside tf.data (they must agree)."""

import numpy as np
import pytest
import tensorflow as tf

from ssl_keras import rotations

B, S, C = 3, 5, 2


@pytest.fixture
def images():
    # Every pixel distinct, so no rotation or flip of an image equals another.
    return np.arange(B * S * S * C, dtype=np.float32).reshape(B, S, S, C)


def _expected(images):
    rotated = np.concatenate([np.rot90(images, k, axes=(1, 2)) for k in range(4)])  # (4*B, S, S, C)
    labels = np.repeat(np.arange(4), len(images))  # 0..0, 1..1, 2..2, 3..3
    return rotated, labels


def test_rotate_batch_exact_pixels_eager(images):
    rotated, labels = rotations.rotate_batch(tf.constant(images))
    want_x, want_y = _expected(images)
    assert rotated.shape == (4 * B, S, S, C)
    assert labels.dtype == tf.int32
    np.testing.assert_array_equal(np.asarray(labels), want_y)
    for k in range(4):
        np.testing.assert_array_equal(np.asarray(rotated[k * B:(k + 1) * B]), np.rot90(images, k, axes=(1, 2)))
    np.testing.assert_array_equal(np.asarray(rotated), want_x)


def test_rotations_are_counter_clockwise_quarter_turns():
    # [[1, 2],     90 deg counter-clockwise  [[2, 4],
    #  [3, 4]]                                [1, 3]]
    image = np.array([[1, 2], [3, 4]], np.float32).reshape(1, 2, 2, 1)
    rotated, labels = rotations.rotate_batch(tf.constant(image))
    got = np.asarray(rotated)[..., 0]
    np.testing.assert_array_equal(got[0], [[1, 2], [3, 4]])
    np.testing.assert_array_equal(got[1], [[2, 4], [1, 3]])
    np.testing.assert_array_equal(got[2], [[4, 3], [2, 1]])
    np.testing.assert_array_equal(got[3], [[3, 1], [4, 2]])
    assert [rotations.angle_of(y) for y in np.asarray(labels)] == [0, 90, 180, 270]


def test_rotate_batch_in_tf_data_equals_eager():
    # 7 images in batches of 3: the last batch is short, and the batch size is unknown when traced.
    images = np.random.default_rng(0).integers(0, 256, (7, S, S, 3)).astype(np.uint8)
    ds = tf.data.Dataset.from_tensor_slices(images).batch(3).map(rotations.rotate_batch)
    assert ds.element_spec[0].shape.as_list() == [None, S, S, 3]
    batches = list(ds.as_numpy_iterator())
    assert [len(x) for x, _ in batches] == [12, 12, 4]
    for i, (x, y) in enumerate(batches):
        chunk = images[3 * i:3 * i + 3]
        eager_x, eager_y = rotations.rotate_batch(tf.constant(chunk))
        np.testing.assert_array_equal(x, np.asarray(eager_x))
        np.testing.assert_array_equal(y, np.asarray(eager_y))
        want_x, want_y = _expected(chunk)
        np.testing.assert_array_equal(x, want_x)
        np.testing.assert_array_equal(y, want_y)
        assert x.dtype == np.uint8  # the transform keeps the dtype


def test_rotate_batch_refuses_non_square_images():
    with pytest.raises(ValueError, match="square.*Received 4x6"):
        rotations.rotate_batch(tf.zeros((2, 4, 6, 3)))
    ds = tf.data.Dataset.from_tensor_slices(np.zeros((2, 4, 6, 3), np.float32)).batch(2)
    with pytest.raises(ValueError, match="square"):
        ds.map(rotations.rotate_batch)


def test_rotate_batch_refuses_a_single_image():
    with pytest.raises(ValueError, match=r"\(B, H, W, C\) batch"):
        rotations.rotate_batch(tf.zeros((4, 4, 3)))
