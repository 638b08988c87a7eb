"""Self-training: a teacher's pseudo-labels on the unlabelled pool train a student (S4L, Noisy Student).

The teacher predicts every photo of the unlabelled pool (the mean of the photo and its
mirror image). Photos whose confidence passes the threshold, balanced across classes,
join the labelled photos, with the teacher's probabilities (or its top breed) as
targets; the student trains on both with augmentation, and optionally with the
rotation loss on its batches. Pseudo-labels never come from validation or test photos:
the pool is the split's `unlabelled` and `unlabelled_val` parts only.
"""

from __future__ import annotations

import numpy as np

from ssl_keras import models, rotations, train


def predict_flip_mean(model, batches) -> np.ndarray:
    """(N, C) mean of the probabilities of each photo and of its mirror image; `batches` yields pixels
    (or (pixels, label) pairs, whose labels are ignored)."""
    import tensorflow as tf

    out = []
    for batch in batches:
        x = batch[0] if isinstance(batch, tuple) else batch
        p = np.asarray(model(x, training=False), np.float64)
        p_flip = np.asarray(model(tf.reverse(x, axis=[2]), training=False), np.float64)  # mirror: width axis
        out.append((p + p_flip) / 2)
    return np.concatenate(out) if out else np.zeros((0, 0))


def sharpen(probs, temperature: float) -> np.ndarray:
    """Probabilities raised to 1 / `temperature` and normalised (MixMatch's sharpening; 1: unchanged)."""
    p = np.asarray(probs, np.float64) ** (1.0 / temperature)
    return p / p.sum(axis=1, keepdims=True)


def threshold_for_precision(probs, labels, min_precision: float, min_count: int = 10) -> float:
    """The lowest confidence at which the teacher is right on at least `min_precision` of the validation
    photos it is at least that confident on (counting at least `min_count` of them).

    Args:
        probs: (N, C) teacher probabilities on the validation photos.
        labels: (N,) their true classes.

    Returns:
        The threshold; 1.0 (no pseudo-label) when no confidence reaches `min_precision`.
    """
    probs, labels = np.asarray(probs), np.asarray(labels).astype(int)
    conf = probs.max(1)
    order = np.argsort(-conf, kind="stable")
    correct = (probs.argmax(1) == labels)[order]
    precision = np.cumsum(correct) / np.arange(1, len(order) + 1)
    ok = [i for i in range(min(min_count, len(order)) - 1, len(order)) if precision[i] >= min_precision]
    return float(conf[order][max(ok)]) if ok else 1.0


def select(probs, threshold: float, per_class: int = 0, balance: bool = True) -> np.ndarray:
    """Indices of the pool photos that get a pseudo-label, most confident first within each class.

    A photo qualifies when its top probability is at least `threshold`. Each class keeps
    its `per_class` most confident photos (0: all); with `balance`, every class keeps as
    many as the class with fewest (classes with none left aside).
    """
    probs = np.asarray(probs)
    conf, pred = probs.max(1), probs.argmax(1)
    chosen = []
    for c in range(probs.shape[1]):
        idx = np.flatnonzero((pred == c) & (conf >= threshold))
        chosen.append(idx[np.argsort(-conf[idx], kind="stable")])
    caps = [len(i) for i in chosen]
    if per_class:
        caps = [min(n, per_class) for n in caps]
    if balance and any(caps):
        floor = min(n for n in caps if n)
        caps = [min(n, floor) for n in caps]
    return np.concatenate([i[:n] for i, n in zip(chosen, caps)]).astype(int) if chosen else np.zeros(0, int)


def pseudo_label_report(keys, probs, chosen, classes, true_class) -> dict:
    """How many pool photos got a pseudo-label, how many show other breeds, and the precision on the rest.

    `true_class(key)` is the photo's folder class: used for this report only, never for the choice.
    """
    pred = np.asarray(probs).argmax(1)
    truth = [true_class(keys[i]) for i in chosen]
    in_class = [(t, classes[pred[i]]) for i, t in zip(chosen, truth) if t in classes]
    return {
        "pool": len(keys),
        "pseudo_labelled": int(len(chosen)),
        "other_breeds": int(len(chosen) - len(in_class)),
        "in_class_precision": float(np.mean([t == p for t, p in in_class])) if in_class else None,
        "per_class": {c: int((pred[chosen] == i).sum()) for i, c in enumerate(classes)},
    }


def mixup(x, p, alpha: float, g):
    """MixUp (Zhang et al. 2018) within a batch: each photo and its target blended with another's,
    by a weight drawn from Beta(alpha, alpha) per photo (the larger weight on the photo itself).

    `g` is a `tf.random.Generator`, made outside any `tf.data` function.
    """
    import tensorflow as tf

    n = tf.shape(x)[0]
    seeds = g.make_seeds(2)  # fresh seeds for every batch
    a = tf.random.stateless_gamma([n], seeds[:, 0], alpha)
    b = tf.random.stateless_gamma([n], seeds[:, 1], alpha)
    lam = tf.maximum(a / (a + b), b / (a + b))  # (B,) in [0.5, 1]
    other = tf.argsort(g.uniform([n]))  # a random partner for every photo
    x = lam[:, None, None, None] * x + (1 - lam[:, None, None, None]) * tf.gather(x, other)
    p = lam[:, None] * p + (1 - lam[:, None]) * tf.gather(p, other)
    return x, p


def dataset(labelled, pseudo, labelled_fraction: float, batch_size: int, augment, rotation: bool, seed: int,
            mixup_alpha: float = 0.0):
    """Endless trainer batches mixing labelled and pseudo-labelled (pixels, target probabilities) photos.

    `labelled_fraction` of the photos of a batch are labelled, on average; with `mixup_alpha`
    the augmented batch is blended by `mixup`. Yields `({"labelled": x}, {"breed": p})`, and
    with `rotation` also `rotated`/`rotation`: the four rotations of the batch, (4*B, S, S, 3).
    """
    import tensorflow as tf

    mixed = tf.data.Dataset.sample_from_datasets([labelled, pseudo], [labelled_fraction, 1 - labelled_fraction],
                                                 seed=seed)
    ds = mixed.batch(batch_size, drop_remainder=True)
    if augment is not None:
        ds = ds.map(lambda x, p: (augment(x, training=True), p), num_parallel_calls=tf.data.AUTOTUNE)
    if mixup_alpha:
        g = tf.random.Generator.from_seed(seed)
        ds = ds.map(lambda x, p: mixup(x, p, mixup_alpha, g), num_parallel_calls=tf.data.AUTOTUNE)

    def to_trainer(x, p):
        if not rotation:
            return {"labelled": x}, {"breed": p}
        rotated, k = rotations.rotate_batch(x)
        return {"labelled": x, "rotated": rotated}, {"breed": p, "rotation": k}

    return ds.map(to_trainer, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def train_student(student, model_cfg, image_size, method_cfg, batches, val, *, steps_per_epoch, stage_dir,
                  photos=None, resume=False, verbose=1, log=print, clock=None) -> dict:
    """Trains `student` on mixed batches (`dataset`) with soft-target cross-entropy (+ rotation loss).

    With the rotation loss, BatchNorm's moving statistics are re-estimated on `photos` (endless
    batches of upright photos) before each validation, as the rotated views drag them.

    Returns:
        The stage's history, as columns.
    """
    rotation = method_cfg.rotation_weight > 0
    trainer = models.build_trainer(student, model_cfg, image_size, rotation=rotation)
    loss = {"breed": "categorical_crossentropy"}
    weights = {"breed": 1.0}
    metrics = {"breed": ["categorical_accuracy"]}
    if rotation:
        loss["rotation"] = "sparse_categorical_crossentropy"
        weights["rotation"] = method_cfg.rotation_weight
    return train.fit(trainer, batches, val, method_cfg.train, stage_dir, steps_per_epoch=steps_per_epoch,
                     resume=resume, keep=student, loss=loss, loss_weights=weights, metrics=metrics, verbose=verbose,
                     log=log, clock=clock, before_validation=None if not (rotation and photos is not None)
                     else lambda m: train.recalibrate_batchnorm(m, photos))
