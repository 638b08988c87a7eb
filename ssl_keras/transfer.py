"""Moving the conv backbone between models, freezing blocks, counting what trains."""

import re

BACKBONE = "backbone"


def copy_backbone(source, target, blocks: int = 0) -> int:
    """Copies the backbone weights of `source` into `target` (dense layers are not touched).

    Weights are matched by path (`block1_conv1/kernel`, ...). Every weight the
    target's backbone expects must be found with the same shape: a partial copy
    raises instead of leaving some layers at their random initial values.
    With `blocks=N` only the first N blocks are copied and the later ones keep
    their fresh initial values, on purpose (RotNet's semi-supervised protocol).

    Returns:
        The number of weight tensors copied.

    Raises:
        ValueError: naming each missing or mis-shaped weight.
    """
    src = {w.path: w for w in source.get_layer(BACKBONE).weights}
    dst = {w.path: w for w in target.get_layer(BACKBONE).weights}
    missing = sorted(set(dst) - set(src))
    unexpected = sorted(set(src) - set(dst))
    mismatched = sorted(k for k in set(dst) & set(src) if tuple(dst[k].shape) != tuple(src[k].shape))
    if missing or unexpected or mismatched:
        detail = "; ".join(
            f"{what}: {names}" for what, names in
            (("missing in source", missing), ("not in target", unexpected),
             ("shape differs", [f"{k} {tuple(src[k].shape)} vs {tuple(dst[k].shape)}" for k in mismatched]))
            if names)
        raise ValueError(f"Backbone weights do not match ({detail}). Was the pretext model built with "
                         "the same `model` config (filters, convs_per_block)?")
    copied = [key for key in dst if not blocks or (block_of(key) or 0) <= blocks]
    for key in copied:
        dst[key].assign(src[key])
    return len(copied)


def copy_weights(source, target) -> int:
    """Copies every weight of `target` from the weight of `source` with the same path (a whole classifier).

    Returns:
        The number of weight tensors copied.

    Raises:
        ValueError: naming the weights that are missing in `source` or differ in shape.
    """
    src = {w.path: w for w in source.weights}
    missing = [w.path for w in target.weights if w.path not in src]
    mismatched = [w.path for w in target.weights if w.path in src and tuple(src[w.path].shape) != tuple(w.shape)]
    if missing or mismatched:
        raise ValueError(f"Model {source.name!r} does not match {target.name!r} (missing: {missing[:5]}; "
                         f"shape differs: {mismatched[:5]}). Expected a classifier of the same config.")
    for w in target.weights:
        w.assign(src[w.path])
    return len(target.weights)


def copy_head(source, target, prefix: str = "rotation") -> int:
    """Copies the weights of every layer of `target` whose name starts with `prefix` from the same-named
    layer of `source` (a pretext model's rotation head into a trainer's).

    Returns:
        The number of weight tensors copied.

    Raises:
        ValueError: naming the layers that are missing in `source` or differ in shape.
    """
    layers = [layer for layer in target.layers if layer.name.startswith(prefix) and layer.weights]
    if not layers:
        raise ValueError(f"Model {target.name!r} has no layer named {prefix}*. Expected a head to copy into.")
    names = {layer.name for layer in source.layers}
    missing = [layer.name for layer in layers if layer.name not in names]

    def shapes(layer):
        return [tuple(w.shape) for w in layer.weights]

    mismatched = [layer.name for layer in layers
                  if layer.name in names and shapes(source.get_layer(layer.name)) != shapes(layer)]
    if missing or mismatched:
        raise ValueError(f"Head {prefix!r} does not match (missing in source: {missing}; shape differs: "
                         f"{mismatched}). Was the pretext model built with the same `model` config?")
    copied = 0
    for layer in layers:
        for dst, src in zip(layer.weights, source.get_layer(layer.name).weights):
            dst.assign(src)
            copied += 1
    return copied


def block_of(layer_name: str) -> int | None:
    """The block number of a backbone layer (`block3_conv1` -> 3), None for others."""
    m = re.match(r"block(\d+)_", layer_name)
    return int(m.group(1)) if m else None


def set_frozen(model, freeze: str) -> None:
    """Freezes the backbone: "all", "none", or "N" for its first N blocks.

    Frozen BatchNorm layers run in inference mode (Keras 3 does this for
    non-trainable BatchNormalization). Compile the model after calling this.
    """
    backbone = model.get_layer(BACKBONE)
    if freeze == "all":
        backbone.trainable = False
        return
    backbone.trainable = True
    n = 0 if freeze == "none" else int(freeze)
    for layer in backbone.layers:
        block = block_of(layer.name)
        layer.trainable = not (block is not None and block <= n)


def count_params(model) -> dict:
    """Trainable and frozen parameter counts."""
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    frozen = sum(int(w.numpy().size) for w in model.non_trainable_weights)
    return {"trainable": trainable, "non_trainable": frozen}
