"""Where photos come from: an ImageFolder directory or a TFDS data set, and the photo checks.

Both sources list their photos as `split.Record`s and give `(encoded bytes, label)`
pairs for keys, so both share one decoder (`ssl_keras.preprocessing`). File names
are kept as the file system gives them: a name that is not valid UTF-8 keeps its
bytes (Python's surrogate escapes), and messages show it with backslash escapes.
"""

from __future__ import annotations

import concurrent.futures
import io
import os
import re
from collections import defaultdict

import tensorflow as tf

from ssl_keras import preprocessing
from ssl_keras.split import Record, declared_split

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
AUTOTUNE = tf.data.AUTOTUNE


def shown(name: str) -> str:
    """A file name as it can be printed: bytes that are not UTF-8 as backslash escapes (`caf\\xe9.jpg`)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class ImageFolder:
    """An ImageFolder directory: `<root>/<class>/<photo>`; keys are paths relative to root."""

    def __init__(self, root: str):
        if not os.path.isdir(root):
            raise ValueError(f"Data folder {shown(root)!r} does not exist or is not a folder. Expected a folder "
                             "with one sub-folder of photos per class (ImageFolder layout).")
        self.root = os.path.abspath(root)
        self.description = f"image folder {shown(self.root)}"

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
            raise ValueError(f"Data folder {shown(self.root)!r} has photos in {len(classes)} class folder(s) "
                             f"({sorted(shown(c) for c in classes)}). Expected at least 2 sub-folders with photos "
                             f"({', '.join(IMAGE_EXTENSIONS)}).")
        return out

    def path(self, key: str) -> bytes:
        """The file of `key`, as bytes (names that are not UTF-8 stay as they are on disk)."""
        return os.fsencode(os.path.join(self.root, key))

    def dataset(self, keys, labels) -> tf.data.Dataset:
        """(encoded bytes, label) pairs in the order of `keys`."""
        paths = [self.path(k) for k in keys]
        ds = tf.data.Dataset.from_tensor_slices((tf.constant(paths, tf.string), list(labels)))
        return ds.map(lambda p, y: (tf.io.read_file(p), y), num_parallel_calls=AUTOTUNE)

    def read(self, key: str) -> bytes:
        with open(self.path(key), "rb") as f:
            return f.read()


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

    def read(self, key: str) -> bytes:
        encoded, _ = next(iter(self.dataset([key], [0])))
        return encoded.numpy()


def open_source(data_dir: str | None, tfds_name: str):
    """The ImageFolder at `data_dir`, or the TFDS data set `tfds_name` when no folder is given."""
    return ImageFolder(data_dir) if data_dir else TfdsSource(tfds_name)


def check_photo(path) -> str | None:
    """Why a photo cannot be used, or None when it decodes with the project's decoder.

    The check is the decode that training and serving use (`preprocessing.decode`),
    so every photo it accepts decodes in the `tf.data` pipeline too.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return f"cannot read it: {e.strerror}"
    if not data:
        return "empty file"
    try:
        image = preprocessing.decode(data)
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.OutOfRangeError) as e:
        return f"not a {preprocessing.FORMATS} photo TensorFlow can decode ({_why(e, data)})"
    if image.shape[0] == 0 or image.shape[1] == 0:
        return "the image has no pixels"
    return None


def _why(error, data: bytes) -> str:
    """TensorFlow's reason, without its node names, and Pillow's diagnosis when it has one."""
    from PIL import Image

    text = (error.message or type(error).__name__).strip().splitlines()[0]
    text = re.sub(r"^\{\{[^}]*\}\}\s*", "", text)
    text = re.sub(r"\s*\[Op:\w+\].*$", "", text)
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except Exception as e:  # Pillow raises many types for broken files
        return f"{text}; Pillow: {e}"
    return text


def scan_images(source, keys, workers: int = 4):
    """Splits `keys` into (usable keys, [[key, reason], ...] for the ones that do not decode).

    TFDS sources are trusted and not scanned.
    """
    if not isinstance(source, ImageFolder):
        return list(keys), []
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        reasons = list(pool.map(lambda k: check_photo(source.path(k)), keys))
    good = [k for k, why in zip(keys, reasons) if why is None]
    bad = [[k, why] for k, why in zip(keys, reasons) if why is not None]
    return good, bad
