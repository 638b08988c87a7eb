"""Photos in, `tf.data` pipelines out: sources, the seeded split, decoding, rotations.

Two sources behind one interface (`records()` and `dataset(keys, labels)`):
an ImageFolder directory (one sub-folder per class) and a TFDS data set
(`stanford_dogs` by default, downloaded on first use). Knows nothing of models.
"""

from __future__ import annotations

import concurrent.futures
import os
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass

import keras
import tensorflow as tf

from ssl_keras import rotations

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
DECODABLE_FORMATS = ("JPEG", "PNG", "GIF", "BMP")
AUTOTUNE = tf.data.AUTOTUNE


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


class ImageFolder:
    """An ImageFolder directory: `<root>/<class>/<photo>`; keys are paths relative to root."""

    def __init__(self, root: str):
        if not os.path.isdir(root):
            raise ValueError(f"Data folder {root!r} does not exist or is not a folder. Expected a folder "
                             "with one sub-folder of photos per class (ImageFolder layout).")
        self.root = os.path.abspath(root)
        self.description = f"image folder {self.root}"

    def records(self) -> list[Record]:
        out = []
        for cls in sorted(os.listdir(self.root)):
            folder = os.path.join(self.root, cls)
            if not os.path.isdir(folder) or cls.startswith("."):
                continue
            for name in sorted(os.listdir(folder)):
                if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                    out.append(Record(f"{cls}/{name}", cls, declared_split(name)))
        classes = {r.label for r in out}
        if len(classes) < 2:
            raise ValueError(f"Data folder {self.root!r} has photos in {len(classes)} class folder(s) "
                             f"({sorted(classes)}). Expected at least 2 sub-folders with photos "
                             f"({', '.join(IMAGE_EXTENSIONS)}).")
        return out

    def path(self, key: str) -> str:
        return os.path.join(self.root, key)

    def dataset(self, keys, labels) -> tf.data.Dataset:
        """(encoded bytes, label) pairs in the order of `keys`."""
        paths = [self.path(k) for k in keys]
        ds = tf.data.Dataset.from_tensor_slices((paths, list(labels)))
        return ds.map(lambda p, y: (tf.io.read_file(p), y), num_parallel_calls=AUTOTUNE)


class TfdsSource:
    """A TFDS image-classification data set (features `image` and `label`); keys are `<split>/<index>`.

    Images stay encoded (`SkipDecoding`) so both sources share one decoder.
    """

    def __init__(self, name: str, data_dir: str | None = None):
        import tensorflow_datasets as tfds

        self._tfds = tfds
        self.builder = tfds.builder(name, data_dir=data_dir)
        self.builder.download_and_prepare()
        self.names = self.builder.info.features["label"].names
        self.splits = sorted(self.builder.info.splits.keys())
        self.description = f"TFDS {name}"

    def _split(self, split):
        # Only `image` (kept encoded) and `label` are read: the other features (e.g. stanford_dogs'
        # bounding boxes) are neither parsed nor, under `tfds.testing.mock_data`, faked.
        decode = self._tfds.decode
        decoders = decode.PartialDecoding({"image": True, "label": True}, decoders={"image": decode.SkipDecoding()})
        return self.builder.as_dataset(split=split, shuffle_files=False, decoders=decoders)

    def records(self) -> list[Record]:
        out = []
        for split in self.splits:
            labels = self._split(split).map(lambda ex: ex["label"])
            for i, y in enumerate(labels.as_numpy_iterator()):
                out.append(Record(f"{split}/{i}", self.names[int(y)], "test" if split == "test" else "train"))
        return out

    def dataset(self, keys, labels) -> tf.data.Dataset:
        """(encoded bytes, label) pairs, grouped by TFDS split (shuffle afterwards)."""
        per_split = defaultdict(dict)
        for key, label in zip(keys, labels):
            split, index = key.rsplit("/", 1)
            per_split[split][int(index)] = int(label)
        parts = []
        for split, wanted in sorted(per_split.items()):
            table = [-1] * (max(wanted) + 1)
            for i, y in wanted.items():
                table[i] = y
            table = tf.constant(table, tf.int32)
            n = len(table)
            ds = self._split(split).take(n).enumerate()
            ds = ds.filter(lambda i, ex: table[tf.cast(i, tf.int32)] >= 0)
            parts.append(ds.map(lambda i, ex: (ex["image"], table[tf.cast(i, tf.int32)])))
        out = parts[0]
        for p in parts[1:]:
            out = out.concatenate(p)
        return out


def open_source(data_dir: str | None, tfds_name: str):
    """The ImageFolder at `data_dir`, or the TFDS data set `tfds_name` when no folder is given."""
    return ImageFolder(data_dir) if data_dir else TfdsSource(tfds_name)


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


def check_image(path: str) -> str | None:
    """Why a photo cannot be used, or None when it decodes (Pillow, full decode of a draft)."""
    from PIL import Image

    try:
        if os.path.getsize(path) == 0:
            return "empty file"
        with Image.open(path) as im:
            if im.format not in DECODABLE_FORMATS:
                return f"unsupported format {im.format}"
            im.draft("RGB", (64, 64))
            im.load()
    except Exception as e:  # Pillow raises many types for broken files
        return f"{type(e).__name__}: {e}"
    return None


def scan_images(source, keys, workers: int = 4):
    """Splits `keys` into (usable keys, [[key, reason], ...] for the unreadable ones).

    TFDS sources are trusted and not scanned.
    """
    if not isinstance(source, ImageFolder):
        return list(keys), []
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        reasons = list(pool.map(lambda k: check_image(source.path(k)), keys))
    good = [k for k, why in zip(keys, reasons) if why is None]
    bad = [[k, why] for k, why in zip(keys, reasons) if why is not None]
    return good, bad


def decode(encoded, resize):
    """Encoded JPEG/PNG/GIF/BMP bytes -> (S, S, 3) uint8, centre-cropped to a square and resized.

    Args:
        encoded: a scalar string tensor.
        resize: the layer from `resizer(S)`, the same settings as the model's
            first layer, so a photo looks the same to training and to a saved model.
    """
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    image = resize(tf.cast(image, tf.float32))
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def resizer(image_size: int):
    """The resize used everywhere: centre crop to square, bilinear, no antialias (a TF.js-supported op)."""
    return keras.layers.Resizing(image_size, image_size, crop_to_aspect_ratio=True, name="resize")


def augmenter(stage, seed: int):
    """Random flip (horizontal only), translation and zoom from a `StageConfig`, or None."""
    if not stage.augment:
        return None
    layers = []
    if stage.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if stage.translate:
        layers.append(keras.layers.RandomTranslation(stage.translate, stage.translate,
                                                     fill_mode="reflect", seed=seed))
    if stage.zoom:
        layers.append(keras.layers.RandomZoom(stage.zoom, fill_mode="reflect", seed=seed))
    return keras.Sequential(layers, name="augment") if layers else None


def _decoded(source, keys, labels, image_size):
    resize = resizer(image_size)
    ds = source.dataset(keys, labels)
    ds = ds.map(lambda b, y: (decode(b, resize), y), num_parallel_calls=AUTOTUNE)
    return ds.cache()


def labelled_dataset(source, items, image_size, batch_size, *, training=False, stage=None, seed=0):
    """Batches of (float32 pixels 0..255, class index) for `items` = [[key, label], ...]."""
    if not items:
        raise ValueError("No photos to build a data set from.")
    keys, labels = zip(*items)
    ds = _decoded(source, keys, labels, image_size)
    if training:
        ds = ds.shuffle(len(items), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=AUTOTUNE)
    aug = augmenter(stage, seed) if (training and stage is not None) else None
    if aug is not None:
        ds = ds.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def pretext_dataset(source, keys, image_size, batch_size, *, training=False, stage=None, seed=0,
                    device=None):
    """Batches of (4*B rotated photos, rotation labels 0..3) from unlabelled `keys`.

    Order: read -> decode/resize (parallel) -> cache -> shuffle -> batch ->
    augment (never a vertical flip: it would corrupt the labels) -> rotate the
    whole batch in one step -> prefetch. With `device` (e.g. "/GPU:0") the
    batches are copied there first and rotated on it.
    """
    if not keys:
        raise ValueError("No unlabelled photos for the rotation task.")
    ds = _decoded(source, keys, [0] * len(keys), image_size).map(lambda x, _: x)
    if training:
        ds = ds.shuffle(len(keys), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda x: tf.cast(x, tf.float32), num_parallel_calls=AUTOTUNE)
    aug = augmenter(stage, seed) if (training and stage is not None) else None
    if aug is not None:
        ds = ds.map(lambda x: aug(x, training=True), num_parallel_calls=AUTOTUNE)
    if device:
        ds = ds.apply(tf.data.experimental.copy_to_device(device))
        with tf.device(device):
            return ds.map(rotations.rotate_batch).prefetch(AUTOTUNE)
    return ds.map(rotations.rotate_batch, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
