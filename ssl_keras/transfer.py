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
