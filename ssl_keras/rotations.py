"""The pretext transform: a batch of images in, its four rotations and their labels out.

Written in `keras.ops`, so the same function runs inside a `tf.data` pipeline
(TensorFlow backend) and on an accelerator under JAX or PyTorch.
"""

from keras import ops

ANGLES = (0, 90, 180, 270)  # label k <-> k * 90 degrees counter-clockwise


def rotate_batch(images):
    """Makes the four rotations of every image in a batch, in one vectorised step.

    Args:
        images: (B, H, W, C) tensor with H == W.

    Returns:
        A tuple `(rotated, labels)`: `rotated` is (4*B, H, W, C), the whole batch
        rotated by 0, then 90, 180 and 270 degrees counter-clockwise; `labels`
        is (4*B,) int32, 0..3, the number of quarter turns.
    """
    if len(images.shape) != 4:
        raise ValueError(f"`images` must be a (B, H, W, C) batch. Received shape: {images.shape}")
    h, w = images.shape[1], images.shape[2]
    if h is not None and w is not None and h != w:
        raise ValueError(f"Rotations need square images so all four share a shape. Received {h}x{w}.")
    batch = ops.shape(images)[0]
    rotated = ops.concatenate([ops.rot90(images, k=k, axes=(1, 2)) for k in range(4)], axis=0)  # (4*B, H, W, C)
    labels = ops.repeat(ops.arange(4, dtype="int32"), batch)  # (4*B,)
    return rotated, labels


def angle_of(label: int) -> int:
    """The rotation in degrees that a label stands for."""
    return ANGLES[int(label)]



