"""Functional builders: the conv backbone, the 4-way rotation model, the breed classifier, and
the trainer that wraps a classifier with the semi-supervised losses' extra inputs and heads.

Resize and rescale live inside the backbone, so every saved model takes raw
pixels (float 0..255, any size) and no caller re-implements preprocessing.
"""

import keras

from ssl_keras import preprocessing


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
    x = preprocessing.resizing(image_size)(inputs)
    x = keras.layers.Rescaling(1.0 / 255, name="rescale")(x)
    for i, f in enumerate(filters, start=1):
        for j in range(1, convs_per_block + 1):
            x = _conv_bn_relu(x, f, bn_momentum, f"block{i}", j)
        x = keras.layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
    return keras.Model(inputs, x, name=name)


@keras.saving.register_keras_serializable(package="ssl_keras")
class BatchNormalization(keras.layers.BatchNormalization):
    """Keras' BatchNormalization; in training on the TensorFlow backend, with TensorFlow's fused kernel.

    Keras 3 normalises with separate element-wise ops (moments, then scale and shift), and
    on a CPU those take about as long as the convolutions themselves
    (`benchmarks/profile_step.py`). `tf.compat.v1.nn.fused_batch_norm` does the same
    arithmetic in one kernel each way. The moving statistics are updated as Keras does
    (with the biased batch variance); inference, other backends and the options the fused
    kernel lacks (masks, renorm, synchronised statistics) run Keras' own code.
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or self.renorm or self.synchronized \
                or keras.backend.backend() != "tensorflow" or len(inputs.shape) != 4 or self.axis not in (-1, 3, [3]):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = tf.cast(inputs, tf.float32)
        channels = x.shape[-1]
        gamma = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels])
        beta = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels])
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=self.epsilon, is_training=True)
        n = tf.cast(tf.size(x) // channels, tf.float32)
        variance = variance * (n - 1) / n  # the kernel returns the unbiased variance; Keras keeps the biased one
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return keras.ops.cast(y, self.compute_dtype)


def with_keras_layers(model):
    """A copy of `model` made of Keras' own layers, with the same weights and `trainable` flags.

    What a run saves (`train.save_model`): `keras.models.load_model` reads the file
    without importing this project. Each `BatchNormalization` (the fused training kernel)
    becomes `keras.layers.BatchNormalization` with the same config; in inference the two
    run the same code, so the copy's outputs are the model's. Nested models (the backbone)
    are copied too, and a call with `training=False` stays one.

    Raises:
        ValueError: when a weight of the copy is not found in `model` (from `transfer.copy_weights`).
    """
    from ssl_keras import transfer

    def clone(layer):
        cls = keras.layers.BatchNormalization if isinstance(layer, BatchNormalization) else type(layer)
        return cls.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    transfer.copy_weights(model, copy)
    _copy_trainable(model, copy)
    return copy


def _copy_trainable(source, target):
    target.trainable = source.trainable  # a container first: it sets every layer inside it
    for a, b in zip(source.layers, target.layers):
        if isinstance(a, keras.Model):
            _copy_trainable(a, b)
        else:
            b.trainable = a.trainable


def load(path: str):
    """`keras.models.load_model(path)`, with this module's layers registered (for files saved before
    `with_keras_layers`, which name `ssl_keras>BatchNormalization`)."""
    return keras.models.load_model(path)


def _conv_bn_relu(x, filters, bn_momentum, prefix, suffix=""):
    """3x3 conv (no bias) -> BN -> ReLU, named `{prefix}_conv{suffix}`, `{prefix}_bn{suffix}`, `..._relu...`."""
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{prefix}_conv{suffix}")(x)
    x = BatchNormalization(momentum=bn_momentum, name=f"{prefix}_bn{suffix}")(x)
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


class StopGradient(keras.layers.Layer):
    """Passes its input through and stops the gradient (FixMatch's pseudo-labels are targets, not outputs)."""

    def call(self, x):
        return keras.ops.stop_gradient(x)


class MostConfident(keras.layers.Layer):
    """FixMatch's strong views worth a pass: the `k` rows of (weak probabilities (U, C), strong views (U, ...))
    whose weak view is the most confident, as (k, C) and (k, ...). A row below the threshold adds nothing to the
    loss, so while fewer than `k` of the U pass it, the loss and its gradient are FixMatch's own."""

    def __init__(self, k: int, **kwargs):
        super().__init__(**kwargs)
        self.k = k

    def call(self, weak, strong):
        _, rows = keras.ops.top_k(keras.ops.max(weak, axis=1), self.k)
        return keras.ops.take(weak, rows, axis=0), keras.ops.take(strong, rows, axis=0)

    def compute_output_spec(self, weak, strong):
        return (keras.KerasTensor((self.k,) + tuple(weak.shape[1:]), weak.dtype),
                keras.KerasTensor((self.k,) + tuple(strong.shape[1:]), strong.dtype))

    def get_config(self):
        return {**super().get_config(), "k": self.k}


def build_trainer(classifier, model_cfg, image_size, *, rotation=False, consistency=False, strong_rows=None):
    """A model that trains `classifier` (sharing its layers) with the semi-supervised losses.

    Inputs and outputs are dicts, so losses are keyed by output name:
      - `labelled` (B, S, S, 3) -> `breed` (B, C), always;
      - with `rotation`: `rotated` (R, S, S, 3) -> `rotation` (R, 4), a rotation head (named as in
        `build_rotation_model`, so a pretext model's head can be copied in) on the shared backbone;
      - with `consistency`: `weak` and `strong` (U, S, S, 3) -> `consistency` (U, 2C), the
        classifier's probabilities on both views side by side, the weak ones without gradient;
        with `strong_rows` k, only the k most confident weak views' strong views pass through the
        classifier (`MostConfident`): (k, 2C).

    Only `classifier` is ever saved: the trainer is the training-time wrapper around it.
    """
    shape = (image_size, image_size, 3)
    inputs = {"labelled": keras.Input(shape, name="labelled")}
    outputs = {"breed": classifier(inputs["labelled"])}
    if rotation:
        inputs["rotated"] = keras.Input(shape, name="rotated")
        features = classifier.get_layer("backbone")(inputs["rotated"])
        for i in range(1, model_cfg.pretext_blocks + 1):
            features = _conv_bn_relu(features, 2 * model_cfg.filters[-1], model_cfg.bn_momentum, f"rotation_block{i}")
        outputs["rotation"] = _head(features, 4, model_cfg.pooling, model_cfg.dense_units, model_cfg.dropout,
                                    "rotation")
    if consistency:
        inputs["weak"] = keras.Input(shape, name="weak")
        inputs["strong"] = keras.Input(shape, name="strong")
        # Both views run in training mode (BatchNorm normalises each batch by its own statistics; the
        # moving averages they drag are re-estimated on photos before each validation, see
        # `train.recalibrate_batchnorm`). The weak view is the pseudo-label: no gradient.
        weak = StopGradient(name="pseudo_label")(classifier(inputs["weak"]))
        strong = inputs["strong"]
        if strong_rows:
            weak, strong = MostConfident(strong_rows, name="most_confident")(weak, strong)
        strong = classifier(strong)
        outputs["consistency"] = keras.layers.Concatenate(name="consistency")([weak, strong])
    return keras.Model(inputs, outputs, name="trainer")
