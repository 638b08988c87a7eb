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
    the next `val_per_class` are validation (`labels_per_class` = 0: all but those). Everything else, other classes
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
        n_labelled = labels_per_class or len(rest) - val_per_class  # 0: all but the validation photos
        need = max(n_labelled, 1) + val_per_class
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
        split["labelled"] += [[r.key, y] for r in rest[:n_labelled]]
        split["val"] += [[r.key, y] for r in rest[n_labelled:need]]
        split["test"] += [[r.key, y] for r in sorted(test, key=lambda r: r.key)]
        split["unlabelled"] += [r.key for r in rest[need:]]
    pool = sorted(split["unlabelled"])
    if max_unlabelled and len(pool) > max_unlabelled:
        pool = sorted(rng.sample(pool, max_unlabelled))
    rng.shuffle(pool)
    n_val = min(1000, max(1, len(pool) // 10)) if len(pool) >= 2 else 0
    split["unlabelled"], split["unlabelled_val"] = sorted(pool[n_val:]), sorted(pool[:n_val])
    return split


def own_classes(records, classes=()) -> list[str]:
    """Your own photos' classes: `classes` as given (checked), else every class of the labelled records;
    unlabelled records (label None) never make one."""
    labelled = [r for r in records if r.label is not None]
    return choose_classes(labelled, classes, len({r.label for r in labelled}))


def folder_split(records, class_names, *, hashes, labels_per_class=0, val_fraction=0.2, test_fraction=0.2,
                 max_unlabelled=0, seed=0) -> dict:
    """The split of your own photos: a labelled tree, optional val/test trees, unlabelled folders.

    `records` come from `sources.PhotoFolders`: a labelled photo has its class as `label` and
    `declared` None, "val" or "test" (from `--val-dir` / `--test-dir`); an unlabelled photo has
    label None. Test is the test folder's photos when there is one (a class it lacks is not
    tested), else a seeded `test_fraction` of each class (at least 1); validation likewise. Every other labelled photo trains
    (`labels_per_class` = 0), or the first `labels_per_class` do and the rest become unlabelled.
    The pool is the unlabelled photos plus the training photos' pixels, less any unlabelled
    photo whose bytes (`hashes`: key -> content hash) equal a validation or test photo's.

    Returns:
        `make_split`'s dict, plus `pool_from_labelled` (training photos also in the pool) and
        `pool_duplicates` (unlabelled keys left out as byte copies of validation/test photos).

    Raises:
        ValueError: naming a class too small to split, or a photo filed under two classes.
    """
    rng = random.Random(seed)
    index = {c: i for i, c in enumerate(class_names)}
    by_class, unlabelled = defaultdict(list), []
    for r in records:
        if r.label is None:
            unlabelled.append(r.key)
        elif r.label in index:
            by_class[r.label].append(r)
    owner = {}
    for cls in sorted(by_class):
        for r in by_class[cls]:
            other = owner.setdefault(hashes[r.key], (cls, r.key))
            if other[0] != cls:
                raise ValueError(f"The same photo is filed under two classes: {other[1]!r} ({other[0]}) and "
                                 f"{r.key!r} ({cls}). Expected each labelled photo in one class folder only.")
    split = {"classes": list(class_names), "labelled": [], "val": [], "test": [], "unlabelled": []}
    extra = []  # labelled photos past `labels_per_class`: unlabelled
    has_val, has_test = (any(r.declared == part for r in records) for part in ("val", "test"))
    for cls in class_names:
        recs = sorted(by_class[cls], key=lambda r: r.key)
        test = [r for r in recs if r.declared == "test"]
        val = [r for r in recs if r.declared == "val"]
        rest = [r for r in recs if r.declared not in ("test", "val")]
        rng.shuffle(rest)
        need = _check_class_size(cls, len(rest), has_val, has_test)
        if not has_test:
            n = min(len(rest) - need + 1, max(1, round(len(rest) * test_fraction)))
            test, rest = rest[:n], rest[n:]
        if not has_val:
            n = min(len(rest) - 1, max(1, round(len(rest) * val_fraction)))
            val, rest = rest[:n], rest[n:]
        if labels_per_class:
            rest, over = rest[:labels_per_class], rest[labels_per_class:]
            extra += [r.key for r in over]
        y = index[cls]
        split["labelled"] += [[r.key, y] for r in sorted(rest, key=lambda r: r.key)]
        split["val"] += [[r.key, y] for r in sorted(val, key=lambda r: r.key)]
        split["test"] += [[r.key, y] for r in sorted(test, key=lambda r: r.key)]
    held_out = {hashes[k] for k, _ in split["val"] + split["test"]}
    duplicates = sorted(k for k in unlabelled + extra if hashes[k] in held_out)
    dropped = set(duplicates)
    pool = sorted(k for k in unlabelled + extra if k not in dropped)
    if max_unlabelled and len(pool) > max_unlabelled:
        pool = sorted(rng.sample(pool, max_unlabelled))
    train_keys = sorted(k for k, _ in split["labelled"])
    pool = pool + train_keys  # the training photos' pixels, unlabelled, as FixMatch and RotNet use them
    rng.shuffle(pool)
    n_val = min(1000, max(1, len(pool) // 10)) if len(pool) >= 2 else 0
    split["unlabelled"], split["unlabelled_val"] = sorted(pool[n_val:]), sorted(pool[:n_val])
    split["pool_from_labelled"] = len(train_keys)
    split["pool_duplicates"] = duplicates
    return split


def _check_class_size(cls: str, n: int, has_val: bool, has_test: bool) -> int:
    """The labelled photos class `cls` needs (one to train, one for each part not given as a folder)."""
    need = 1 + (not has_val) + (not has_test)
    if n < need:
        parts = ["training"] + ([] if has_val else ["validation"]) + ([] if has_test else ["test"])
        raise ValueError(
            f"Class {cls!r} has {n} labelled photo(s) outside --val-dir/--test-dir; it needs at least {need}, one "
            f"each for {', '.join(parts)}. Add photos to its folder, or give --val-dir/--test-dir.")
    return need


def check_folder_classes(records, class_names) -> None:
    """`folder_split`'s class-size check alone (before any work): ValueError naming a class too small to split."""
    has_val, has_test = (any(r.declared == part for r in records) for part in ("val", "test"))
    for cls in class_names:
        rest = [r for r in records if r.label == cls and r.declared not in ("test", "val")]
        _check_class_size(cls, len(rest), has_val, has_test)
