"""Test metrics as plain data: accuracy, per-class accuracy, confusion matrix, top-k."""

import numpy as np


def predict_dataset(model, dataset):
    """(probabilities (N, C), true labels (N,)) over a batched data set of (pixels, labels).

    The model's call is traced once (`train.compiled_call`, as validation calls it): a classifier of `quick` scores
    2,924 photos in 0.42 s against 1.27 s eagerly (`benchmarks/bench_validation.py`, BENCHMARKS §6.3).
    """
    from ssl_keras.train import compiled_call

    forward = compiled_call(model, training=False)
    probs, labels = [], []
    for x, y in dataset:
        probs.append(np.asarray(forward(x)))
        labels.append(np.asarray(y))
    return np.concatenate(probs), np.concatenate(labels)


def metrics(probs, labels, class_names) -> dict:
    """Accuracy, top-3 accuracy, per-class accuracy and the confusion matrix (rows: true, columns: predicted)."""
    probs, labels = np.asarray(probs), np.asarray(labels).astype(int)
    pred = probs.argmax(axis=1)
    n = len(class_names)
    confusion = np.zeros((n, n), dtype=int)
    np.add.at(confusion, (labels, pred), 1)
    per_class = {c: float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None
                 for i, c in enumerate(class_names)}
    top3 = np.argsort(-probs, axis=1)[:, :3]
    return {
        "n": int(len(labels)),
        "accuracy": float((pred == labels).mean()),
        "top3_accuracy": float((top3 == labels[:, None]).any(axis=1).mean()),
        "per_class_accuracy": per_class,
        "confusion": confusion.tolist(),
    }


def top_k(probs_row, class_names, k=5) -> list[tuple[str, float]]:
    """The k most probable classes of one prediction, best first."""
    order = np.argsort(-np.asarray(probs_row))[:k]
    return [(class_names[i], float(probs_row[i])) for i in order]


def predict_image(model, image):
    """(C,) probabilities of one (H, W, 3) photo, any size (the model resizes)."""
    import numpy as np

    return np.asarray(model(image[None].astype("float32"), training=False))[0]


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of an accuracy of `correct` out of `n` photos (95 % for z = 1.96).

    Unlike accuracy ± 1.96 standard errors, it stays inside [0, 1] and is not zero-wide at 0 or n
    correct, which matters on the few photos of a small validation or test folder.
    """
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def overlap(a, b) -> bool:
    """Whether the intervals `a` and `b` ((low, high) pairs) share a point: then their photos cannot tell apart
    the two accuracies."""
    return a[0] <= b[1] and b[0] <= a[1]


def scored(accuracy: float | None, n: int) -> dict:
    """An accuracy on `n` photos with its count and 95 % Wilson interval (report.json's form)."""
    if accuracy is None:
        return {"accuracy": None, "photos": n, "interval_95": None}
    lo, hi = wilson_interval(round(accuracy * n), n)
    return {"accuracy": accuracy, "photos": n, "interval_95": [lo, hi]}
