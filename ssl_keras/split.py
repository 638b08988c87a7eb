"""The seeded split: labelled / validation / test / unlabelled. Pure Python, no TensorFlow.

A source (`ssl_keras.sources`) lists its photos as `Record`s; `make_split` turns
them into the parts a run trains and scores on, the same on every machine for a seed.
"""

from __future__ import annotations

import os
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass


@dataclass(frozen=True)
class Record:
    """One photo: `key` locates it in its source, `label` is its class name,
    `declared` is the split its source declares ("train", "test" or None)."""

    key: str
    label: str
    declared: str | None = None


def declared_split(filename: str) -> str | None:
    """The split a file name declares: its first token among train/val/valid/test.

    `imagewoof_val_n02086240_1.jpg` -> "test"; `imagewoof_train_ILSVRC2012_val_1.jpg`
    -> "train" (the first split token wins); `stanforddogs_crop224_1.jpg` -> None.
    """
    for token in re.split(r"[_\-.\s]+", os.path.splitext(os.path.basename(filename))[0].lower()):
        if token == "train":
            return "train"
        if token in ("val", "valid", "test"):
            return "test"
    return None


def choose_classes(records, classes=(), num_classes=10) -> list[str]:
    """The classes to label: `classes` as given (checked), else the `num_classes` with most photos.

    Ties are broken by name, so the choice is the same on every machine.
    """
    counts = Counter(r.label for r in records)
    if classes:
        missing = [c for c in classes if c not in counts]
        if missing:
            raise ValueError(f"Unknown class(es) {missing}. Expected names among: {sorted(counts)}.")
        return sorted(classes)
    if num_classes > len(counts):
        raise ValueError(f"`num_classes` is {num_classes} but the data has only {len(counts)} classes: "
                         f"{sorted(counts)}.")
    ranked = sorted(counts, key=lambda c: (-counts[c], c))
    return sorted(ranked[:num_classes])


def make_split(records, class_names, *, labels_per_class, val_per_class, test_fraction=0.2,
               max_test_per_class=0, max_unlabelled=0, seed=0) -> dict:
    """Splits records into labelled train, validation, test and the unlabelled pool.

    Per chosen class, test is what the source declares as test (else a seeded
    `test_fraction`); from the rest, `labels_per_class` photos are labelled and
    the next `val_per_class` are validation. Everything else, other classes
    included, is unlabelled, except any photo declared as test.

    Returns:
        A dict with `classes`, `labelled`, `val`, `test` (lists of [key, class index]),
        `unlabelled` and `unlabelled_val` (lists of keys; the second, a tenth of the
        pool up to 1000 photos, validates the rotation task). The parts are disjoint.

    Raises:
        ValueError: when a class has too few photos for the labels asked for.
    """
    rng = random.Random(seed)
    test_rng = random.Random(f"{seed}:test")  # capping the test photos leaves the other parts as they are
    index = {c: i for i, c in enumerate(class_names)}
    by_class = defaultdict(list)
    for r in records:
        by_class[r.label].append(r)
    split = {"classes": list(class_names), "labelled": [], "val": [], "test": [], "unlabelled": []}
    for cls in sorted(by_class):
        recs = sorted(by_class[cls], key=lambda r: r.key)
        if cls not in index:
            split["unlabelled"] += [r.key for r in recs if r.declared != "test"]
            continue
        test = [r for r in recs if r.declared == "test"]
        rest = [r for r in recs if r.declared != "test"]
        rng.shuffle(rest)
        if not test:
            n_test = max(1, round(len(rest) * test_fraction))
            test, rest = rest[:n_test], rest[n_test:]
        need = labels_per_class + val_per_class
        if len(rest) < need:
            raise ValueError(
                f"Class {cls!r} has {len(rest)} photos outside its test split, fewer than "
                f"labels_per_class + val_per_class = {labels_per_class} + {val_per_class} = {need}. "
                "Lower `--labels-per-class` or add photos.")
        if max_test_per_class:
            test = sorted(test, key=lambda r: r.key)
            test_rng.shuffle(test)
            test = test[:max_test_per_class]
        y = index[cls]
        split["labelled"] += [[r.key, y] for r in rest[:labels_per_class]]
        split["val"] += [[r.key, y] for r in rest[labels_per_class:need]]
        split["test"] += [[r.key, y] for r in sorted(test, key=lambda r: r.key)]
        split["unlabelled"] += [r.key for r in rest[need:]]
    pool = sorted(split["unlabelled"])
    if max_unlabelled and len(pool) > max_unlabelled:
        pool = sorted(rng.sample(pool, max_unlabelled))
    rng.shuffle(pool)
    n_val = min(1000, max(1, len(pool) // 10)) if len(pool) >= 2 else 0
    split["unlabelled"], split["unlabelled_val"] = sorted(pool[n_val:]), sorted(pool[:n_val])
    return split
