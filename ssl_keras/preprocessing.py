"""The one decode and the one resize. Every photo the project reads goes through both.

`decode` turns encoded bytes into RGB pixels as a browser does (JPEG with the
accurate integer IDCT); `resizing` is the layer that centre-crops to a square and
resizes, bilinear without antialias (an op TF.js has). The model starts with
`resizing`, the `tf.data` pipeline caches its output, and the SavedModel, `predict`
and the benchmarks call `decode`; so training, serving and the web page see the same
pixels, to float precision. `resizing` needs only Keras (the model runs on any backend);
the decoders need TensorFlow, imported when they are called.
"""

from __future__ import annotations

import os

import keras

FORMATS = "JPEG, PNG, GIF or BMP"


def decode(encoded):
    """Encoded JPEG, PNG, GIF (first frame) or BMP bytes -> (H, W, 3) uint8 RGB.

    JPEG uses the accurate integer IDCT (`dct_method="INTEGER_ACCURATE"`), as
    browsers decode it; TensorFlow's default, the fast IDCT, differs by a few levels.
    Greyscale and CMYK become RGB. Works eagerly, in `tf.data` and in a SavedModel.

    Raises:
        tf.errors.InvalidArgumentError: for bytes that are not such an image.
    """
    import tensorflow as tf

    encoded = tf.convert_to_tensor(encoded, tf.string)
    image = tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False),
    )
    image.set_shape([None, None, 3])
    return image


def resizing(image_size: int) -> keras.layers.Resizing:
    """The resize used everywhere: centre crop to a square, then bilinear to `image_size`, no antialias."""
    return keras.layers.Resizing(image_size, image_size, crop_to_aspect_ratio=True, interpolation="bilinear",
                                 name="resize")


def decode_resized(encoded, resize):
    """Encoded bytes -> (S, S, 3) float32 pixels 0..255: `decode`, then the `resizing` layer `resize`.

    The model's own resize maps S x S to itself exactly, so a model sees the same pixels
    whether it is given this or the photo at full size.
    """
    import tensorflow as tf

    return tf.cast(resize(tf.cast(decode(encoded), tf.float32)), tf.float32)  # float16 under mixed precision


def read_photo(path):
    """The photo at `path` (str or bytes) as a (H, W, 3) uint8 RGB numpy array.

    Raises:
        ValueError: naming the file, when it is missing or not a JPEG, PNG, GIF or BMP photo.
    """
    import tensorflow as tf

    shown = os.fsdecode(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"{shown}: cannot read it ({e.strerror}). Expected the path of a photo.") from None
    try:
        return decode(data).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as e:
        reason = (e.message or type(e).__name__).strip().splitlines()[0]
        raise ValueError(f"{shown}: cannot read it as an image ({reason}). Expected a {FORMATS} photo.") from None
