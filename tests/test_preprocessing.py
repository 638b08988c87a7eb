"""preprocessing.py: the one decode (accurate IDCT, odd formats to RGB) and the one resize."""

import os

import numpy as np
import pytest
import tensorflow as tf

from ssl_keras import preprocessing, sources

S = 24


def _decode_all(source, keys, size=S):
    resize = preprocessing.resizing(size)
    ds = source.dataset(keys, [0] * len(keys)).map(lambda b, y: preprocessing.decode_resized(b, resize))
    return list(ds.as_numpy_iterator())


def test_kept_odd_files_decode_in_tf_data(image_folder):
    source = sources.ImageFolder(image_folder.root)
    odd = [image_folder.odd[n] for n in ("greyscale.jpg", "cmyk.jpg", "png_named.jpg")]
    grey, cmyk, png = _decode_all(source, odd)
    (reference,) = _decode_all(source, [os.path.relpath(image_folder.source_photo, image_folder.root)])
    for image in (grey, cmyk, png, reference):
        assert image.shape == (S, S, 3) and image.dtype == np.float32
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    diff = lambda a, b: np.abs(a.astype(float) - b.astype(float)).mean()  # noqa: E731
    assert diff(png, reference) < 3  # lossless copy of the photo (the photo's own JPEG noise aside)
    assert diff(cmyk, reference) < 12  # CMYK is converted back to RGB, not read as a negative
    assert diff(grey.mean(-1), reference.mean(-1)) < 12


def test_skipped_files_would_break_tf_decoding(image_folder):
    """The scan is there for a reason: each file it skips stops a tf.data pipeline."""
    source = sources.ImageFolder(image_folder.root)
    for key in image_folder.bad.values():
        with pytest.raises(tf.errors.InvalidArgumentError):
            _decode_all(source, [key])
