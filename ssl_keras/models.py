"""Functional builders: the conv backbone, the 4-way rotation model and the breed classifier.

Resize and rescale live inside the backbone, so every saved model takes raw
pixels (float 0..255, any size) and no caller re-implements preprocessing.
"""

import keras


def build_backbone(filters=(16, 32, 64, 128), convs_per_block=1, image_size=64, bn_momentum=0.9,
                   name="backbone"):
    """Conv -> BN -> ReLU (x `convs_per_block`) -> 2x2 max-pool, once per entry of `filters`.

    Layers are named `block{i}_conv{j}`, `block{i}_bn{j}`, ... so that weights can be
    matched by name when they move between models, and blocks frozen by number.

    Args:
        filters: output channels of each block.
        convs_per_block: conv layers in each block.
        image_size: the square size every input is centre-cropped and resized to.
        bn_momentum: BatchNormalization momentum of the moving statistics.
        name: the model's name.

    Returns:
        A `keras.Model` from (B, H, W, 3) pixels 0..255 to
        (B, S / 2**n, S / 2**n, filters[-1]) features.
    """
    inputs = keras.Input((None, None, 3), name="pixels")
    x = keras.layers.Resizing(image_size, image_size, crop_to_aspect_ratio=True, name="resize")(inputs)
    x = keras.layers.Rescaling(1.0 / 255, name="rescale")(x)
    for i, f in enumerate(filters, start=1):
        for j in range(1, convs_per_block + 1):
            x = _conv_bn_relu(x, f, bn_momentum, f"block{i}", j)
        x = keras.layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
    return keras.Model(inputs, x, name=name)


def _conv_bn_relu(x, filters, bn_momentum, prefix, suffix=""):
    """3x3 conv (no bias) -> BN -> ReLU, named `{prefix}_conv{suffix}`, `{prefix}_bn{suffix}`, `..._relu...`."""
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{prefix}_conv{suffix}")(x)
    x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"{prefix}_bn{suffix}")(x)
    return keras.layers.ReLU(name=f"{prefix}_relu{suffix}")(x)


def _head(features, num_outputs, pooling, dense_units, dropout, name):
    if pooling == "flatten":
        x = keras.layers.Flatten(name=f"{name}_flatten")(features)
    else:
        x = keras.layers.GlobalAveragePooling2D(name=f"{name}_pool")(features)
    x = keras.layers.Dense(dense_units, activation="relu", name=f"{name}_dense")(x)
    x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    # float32 softmax, also under mixed precision.
    return keras.layers.Dense(num_outputs, activation="softmax", dtype="float32", name=name)(x)


def _build(model_cfg, image_size, num_outputs, head_name, model_name, frozen_backbone=False, head_blocks=0):
    backbone = build_backbone(model_cfg.filters, model_cfg.convs_per_block, image_size, model_cfg.bn_momentum)
    inputs = keras.Input((None, None, 3), name="pixels")
    if frozen_backbone:
        backbone.trainable = False
        features = backbone(inputs, training=False)  # BatchNorm stays in inference mode
    else:
        features = backbone(inputs)
    for i in range(1, head_blocks + 1):  # outside the backbone: transfer leaves them behind
        features = _conv_bn_relu(features, 2 * model_cfg.filters[-1], model_cfg.bn_momentum, f"{head_name}_block{i}")
    outputs = _head(features, num_outputs, model_cfg.pooling, model_cfg.dense_units, model_cfg.dropout, head_name)
    return keras.Model(inputs, outputs, name=model_name)


def build_rotation_model(model_cfg, image_size):
    """The backbone with a 4-way rotation head; output `rotation` (B, 4) softmax.

    With `model_cfg.pretext_blocks=N` the head starts with N more conv -> BN -> ReLU
    blocks (twice the last block's filters, no pooling). They are not part of the
    backbone, so transfer drops them: the rotation-specific features they learn stay
    behind (RotNet: a deeper pretext model makes its earlier blocks more general).
    """
    return _build(model_cfg, image_size, 4, "rotation", "rotation_model", head_blocks=model_cfg.pretext_blocks)


def build_classifier(model_cfg, image_size, num_classes, frozen_backbone=False):
    """The backbone with a fresh breed head; output `breed` (B, num_classes) softmax.

    With `frozen_backbone` the backbone is not trainable and is called with
    `training=False`, so its BatchNorm statistics do not move.
    """
    return _build(model_cfg, image_size, num_classes, "breed", "breed_classifier", frozen_backbone)
