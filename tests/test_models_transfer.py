"""models.py and transfer.py: named outputs and layers, any input size, copying and freezing the backbone."""

import keras
import numpy as np
import pytest

from ssl_keras import models, train, transfer
from ssl_keras.config import ModelConfig, StageConfig

SIZE = 32
CFG = ModelConfig(filters=(8, 16, 16), dense_units=16, dropout=0.0)


def _pixels(n, h=SIZE, w=SIZE, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, h, w, 3)).astype("float32")


def _values(layer_or_model):
    return {w.path: np.array(w.numpy()) for w in layer_or_model.weights}


def _randomise(model, seed=0):
    """Gives every weight a random value (BatchNorm statistics included), so equality means copied."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.uniform(0.5, 1.5, tuple(w.shape)).astype("float32"))


def test_models_have_named_outputs_and_layers():
    classifier = models.build_classifier(CFG, SIZE, 3)
    rotation = models.build_rotation_model(CFG, SIZE)
    assert classifier.output_names == ["breed"] and classifier.name == "breed_classifier"
    assert rotation.output_names == ["rotation"] and rotation.name == "rotation_model"
    for model, head in ((classifier, "breed"), (rotation, "rotation")):
        backbone = model.get_layer("backbone")
        assert [layer.name for layer in backbone.layers] == [
            "pixels", "resize", "rescale",
            "block1_conv1", "block1_bn1", "block1_relu1", "block1_pool",
            "block2_conv1", "block2_bn1", "block2_relu1", "block2_pool",
            "block3_conv1", "block3_bn1", "block3_relu1", "block3_pool",
        ]
        for name in (f"{head}_pool", f"{head}_dense", f"{head}_dropout", head):
            model.get_layer(name)


def test_convs_per_block_and_flatten_pooling():
    cfg = ModelConfig(filters=(8, 16), convs_per_block=2, pooling="flatten", dense_units=8)
    model = models.build_classifier(cfg, SIZE, 5)
    backbone = model.get_layer("backbone")
    assert {"block1_conv1", "block1_conv2", "block2_conv2", "block2_bn2"} <= {layer.name for layer in backbone.layers}
    model.get_layer("breed_flatten")
    # 32 px through two 2x2 pools -> 8x8x16 features -> flatten.
    assert model.get_layer("breed_dense").kernel.shape == (8 * 8 * 16, 8)


@pytest.mark.parametrize("h, w", [(50, 70), (100, 80), (SIZE, SIZE)])
def test_models_take_raw_pixels_of_any_size(h, w):
    classifier = models.build_classifier(CFG, SIZE, 3)
    rotation = models.build_rotation_model(CFG, SIZE)
    x = _pixels(2, h, w)
    probs = np.asarray(classifier(x, training=False))
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert np.asarray(rotation(x, training=False)).shape == (2, 4)


def test_resize_and_rescale_are_inside_the_model():
    backbone = models.build_classifier(CFG, SIZE, 3).get_layer("backbone")
    features = keras.Model(backbone.input, backbone.get_layer("rescale").output)
    x = np.full((1, 64, 48, 3), 255.0, "float32")
    out = np.asarray(features(x))
    assert out.shape == (1, SIZE, SIZE, 3)
    np.testing.assert_allclose(out, 1.0, rtol=1e-6)  # 0..255 -> 0..1


def test_copy_backbone_copies_exactly_the_backbone():
    source = models.build_rotation_model(CFG, SIZE)
    _randomise(source, seed=1)
    target = models.build_classifier(CFG, SIZE, 3)
    head_before = {n: _values(target.get_layer(n)) for n in ("breed_dense", "breed")}

    copied = transfer.copy_backbone(source, target)

    src, dst = _values(source.get_layer("backbone")), _values(target.get_layer("backbone"))
    assert copied == len(dst) == 3 * 5  # per block: conv kernel + BN gamma, beta, moving mean, moving variance
    assert src.keys() == dst.keys()
    for path in dst:
        np.testing.assert_array_equal(dst[path], src[path], err_msg=path)
    # The heads are untouched: still the fresh initial values, unlike the source's trained-looking head.
    for name, before in head_before.items():
        after = _values(target.get_layer(name))
        for path in before:
            np.testing.assert_array_equal(after[path], before[path], err_msg=path)
    src_dense, dst_dense = source.get_layer("rotation_dense").kernel, target.get_layer("breed_dense").kernel
    assert src_dense.shape == dst_dense.shape
    assert not np.allclose(np.asarray(src_dense), np.asarray(dst_dense))
    # And the copied backbone computes what the source's does.
    x = _pixels(2)
    np.testing.assert_allclose(np.asarray(target.get_layer("backbone")(x, training=False)),
                               np.asarray(source.get_layer("backbone")(x, training=False)), rtol=1e-5, atol=1e-5)


def test_pretext_blocks_stay_in_the_rotation_head(tmp_path):
    cfg = ModelConfig(filters=(8, 16, 16), dense_units=16, dropout=0.0, pretext_blocks=2)
    rotation = models.build_rotation_model(cfg, SIZE)
    for i in (1, 2):
        assert rotation.get_layer(f"rotation_block{i}_conv").kernel.shape[-1] == 2 * 16
        rotation.get_layer(f"rotation_block{i}_bn")
    assert rotation.get_layer("rotation_dense").kernel.shape == (2 * 16, 16)
    classifier = models.build_classifier(cfg, SIZE, 3)  # the classifier never has them
    assert not [layer.name for layer in classifier.layers if "_block" in layer.name]
    assert _values(classifier.get_layer("backbone")).keys() == _values(rotation.get_layer("backbone")).keys()
    # The saved rotation model loads with its head blocks, and only the backbone moves.
    _randomise(rotation, seed=2)
    rotation.save(tmp_path / "rotation.keras")
    loaded = keras.models.load_model(tmp_path / "rotation.keras")
    x = _pixels(2)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(rotation(x)), rtol=1e-5, atol=1e-6)
    assert transfer.copy_backbone(loaded, classifier) == 3 * 5
    np.testing.assert_allclose(np.asarray(classifier.get_layer("backbone")(x, training=False)),
                               np.asarray(rotation.get_layer("backbone")(x, training=False)), rtol=1e-5, atol=1e-5)


def test_copy_backbone_first_blocks_only():
    source = models.build_rotation_model(CFG, SIZE)
    _randomise(source, seed=1)
    target = models.build_classifier(CFG, SIZE, 3)
    before = _values(target.get_layer("backbone"))

    copied = transfer.copy_backbone(source, target, blocks=2)

    src, dst = _values(source.get_layer("backbone")), _values(target.get_layer("backbone"))
    assert copied == 2 * 5
    for path in dst:
        expected = src[path] if transfer.block_of(path) <= 2 else before[path]
        np.testing.assert_array_equal(dst[path], expected, err_msg=path)
    assert not np.allclose(dst["block3_conv1/kernel"], src["block3_conv1/kernel"])


@pytest.mark.parametrize(
    "source_cfg, problem, name",
    [
        (ModelConfig(filters=(8, 32, 16), dense_units=16), "shape differs", "block2_conv1"),
        (ModelConfig(filters=(8, 16), dense_units=16), "missing in source", "block3_conv1"),
        (ModelConfig(filters=(8, 16, 16, 16), dense_units=16), "not in target", "block4_conv1"),
        (ModelConfig(filters=(8, 16, 16), convs_per_block=2, dense_units=16), "not in target", "block1_conv2"),
    ],
)
def test_copy_backbone_refuses_a_mismatched_backbone(source_cfg, problem, name):
    source = models.build_rotation_model(source_cfg, SIZE)
    target = models.build_classifier(CFG, SIZE, 3)
    before = _values(target)
    with pytest.raises(ValueError, match="Backbone weights do not match") as e:
        transfer.copy_backbone(source, target)
    assert problem in str(e.value) and name in str(e.value)
    for path, value in _values(target).items():  # nothing was half-copied
        np.testing.assert_array_equal(value, before[path], err_msg=path)


def test_block_of():
    assert transfer.block_of("block3_conv1") == 3
    assert transfer.block_of("block12_bn2") == 12
    assert transfer.block_of("resize") is None
    assert transfer.block_of("breed_dense") is None


def test_set_frozen_first_blocks():
    model = models.build_classifier(CFG, SIZE, 3)
    transfer.set_frozen(model, "2")
    backbone = model.get_layer("backbone")
    assert backbone.trainable
    for layer in backbone.layers:
        block = transfer.block_of(layer.name)
        if block is not None:
            assert layer.trainable == (block >= 3), layer.name
    assert model.get_layer("breed_dense").trainable and model.get_layer("breed").trainable

    transfer.set_frozen(model, "none")
    assert all(layer.trainable for layer in backbone.layers)
    transfer.set_frozen(model, "all")
    assert not backbone.trainable and not backbone.trainable_weights
    assert model.get_layer("breed_dense").trainable


def _train_one_step(model):
    train.compile_model(model, StageConfig(epochs=1, learning_rate=0.1), steps_per_epoch=1)
    x = _pixels(8, seed=2)
    y = np.arange(8) % 3
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)


def _moved(before, after):
    return {p for p in before if not np.array_equal(before[p], after[p])}


@pytest.mark.parametrize("frozen_backbone", [False, True])
def test_frozen_backbone_does_not_move_when_training(frozen_backbone):
    model = models.build_classifier(CFG, SIZE, 3, frozen_backbone=frozen_backbone)
    transfer.set_frozen(model, "all")
    backbone_before, head_before = _values(model.get_layer("backbone")), _values(model.get_layer("breed_dense"))
    _train_one_step(model)
    # Neither the weights nor the BatchNorm moving statistics of the backbone moved; the head did.
    assert _moved(backbone_before, _values(model.get_layer("backbone"))) == set()
    assert _moved(head_before, _values(model.get_layer("breed_dense")))


def test_partly_frozen_backbone_trains_only_the_later_blocks():
    model = models.build_classifier(CFG, SIZE, 3)
    transfer.set_frozen(model, "2")
    before = _values(model.get_layer("backbone"))
    _train_one_step(model)
    moved = _moved(before, _values(model.get_layer("backbone")))
    assert {p for p in moved if transfer.block_of(p.split("/")[-2]) in (1, 2)} == set()
    # block 3 trains: its kernel, BN gamma and beta, and its moving statistics all move.
    assert {p.split("/")[-1] for p in moved} == {"kernel", "gamma", "beta", "moving_mean", "moving_variance"}


def test_count_params():
    model = models.build_classifier(CFG, SIZE, 3)
    convs = 3 * 3 * 3 * 8 + 3 * 3 * 8 * 16 + 3 * 3 * 16 * 16  # no conv bias
    bn_trainable = 2 * (8 + 16 + 16)  # gamma, beta
    bn_stats = 2 * (8 + 16 + 16)  # moving mean, variance
    head = (16 * 16 + 16) + (16 * 3 + 3)
    assert transfer.count_params(model) == {"trainable": convs + bn_trainable + head, "non_trainable": bn_stats}
    transfer.set_frozen(model, "all")
    assert transfer.count_params(model) == {"trainable": head, "non_trainable": convs + bn_trainable + bn_stats}
    transfer.set_frozen(model, "1")
    block1 = 3 * 3 * 3 * 8 + 2 * 8
    assert transfer.count_params(model) == {"trainable": convs + bn_trainable + head - block1,
                                            "non_trainable": bn_stats + block1}


def test_fused_batch_norm_matches_keras_batch_norm(tmp_path):
    """Same outputs, gradients and moving statistics as Keras' layer, in training and inference; saves and loads."""
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(0).normal(3, 2, (8, 5, 5, 6)).astype("float32"))
    ours, theirs = models.BatchNormalization(momentum=0.9), keras.layers.BatchNormalization(momentum=0.9)
    ours.build(x.shape)
    theirs.build(x.shape)
    rng = np.random.default_rng(1)
    for layer in (ours, theirs):
        layer.gamma.assign(rng.uniform(0.5, 2, 6).astype("float32"))
        layer.beta.assign(rng.normal(0, 1, 6).astype("float32"))
        rng = np.random.default_rng(1)
    weights = tf.constant(np.random.default_rng(2).normal(size=(8, 5, 5, 6)).astype("float32"))
    grads = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * weights)
        grads.append([y, *tape.gradient(loss, [x, layer.gamma, layer.beta])])
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours.moving_mean, theirs.moving_mean, rtol=1e-6)
    np.testing.assert_allclose(ours.moving_variance, theirs.moving_variance, rtol=1e-5)
    np.testing.assert_allclose(ours(x, training=False), theirs(x, training=False), rtol=1e-5, atol=1e-5)

    model = models.build_classifier(ModelConfig(filters=(4,)), 16, 3)
    assert isinstance(model.get_layer("backbone").get_layer("block1_bn1"), models.BatchNormalization)
    path = str(tmp_path / "m.keras")
    model.save(path)
    pixels = np.random.default_rng(3).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(models.load(path)(pixels), model(pixels), rtol=1e-6)


# A fresh interpreter that never imports ssl_keras: loads a .keras file with plain Keras, runs it on saved pixels.
_PLAIN_KERAS = """
import json, sys
import keras, numpy as np
model = keras.models.load_model(sys.argv[1])
out = np.asarray(model(np.load(sys.argv[2]), training=False))
np.save(sys.argv[3], out)
backbone = model.get_layer("backbone")
print(json.dumps({"ssl_keras_imported": any(m.startswith("ssl_keras") for m in sys.modules),
                  "bn": sorted({type(l).__module__ + "." + type(l).__name__ for l in backbone.layers
                                if "BatchNormalization" in type(l).__name__}),
                  "trainable": {l.name: l.trainable for l in backbone.layers if l.weights}}))
"""


@pytest.mark.parametrize("freeze", ["1", "all"])
def test_saved_classifier_loads_in_plain_keras(tmp_path, freeze):
    """`train.save_model` writes Keras' own layers: a fresh interpreter without ssl_keras loads the file and
    gives the in-process model's outputs (BatchNorm statistics included) and its frozen blocks."""
    import json
    import subprocess
    import sys

    model = models.build_classifier(CFG, SIZE, 3, frozen_backbone=(freeze == "all"))
    transfer.set_frozen(model, freeze)
    _randomise(model, seed=4)
    assert isinstance(model.get_layer("backbone").get_layer("block1_bn1"), models.BatchNormalization)
    path, pixels, out = tmp_path / "best.keras", tmp_path / "x.npy", tmp_path / "y.npy"
    train.save_model(model, str(path))
    x = _pixels(3, 40, 50, seed=5)
    np.save(pixels, x)
    proc = subprocess.run([sys.executable, "-c", _PLAIN_KERAS, str(path), str(pixels), str(out)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["ssl_keras_imported"] is False
    assert info["bn"] == ["keras.src.layers.normalization.batch_normalization.BatchNormalization"]
    backbone = model.get_layer("backbone")
    assert info["trainable"] == {layer.name: layer.trainable for layer in backbone.layers if layer.weights}
    np.testing.assert_allclose(np.load(out), np.asarray(model(x, training=False)), rtol=1e-5, atol=1e-6)
    assert isinstance(backbone.get_layer("block1_bn1"), models.BatchNormalization)  # the model itself is unchanged
