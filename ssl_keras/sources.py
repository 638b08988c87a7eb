"""Where photos come from: an ImageFolder directory or a TFDS data set, and the photo checks.

Both sources list their photos as `split.Record`s and give `(encoded bytes, label)`
pairs for keys, so both share one decoder (`ssl_keras.preprocessing`). File names
are kept as the file system gives them: a name that is not valid UTF-8 keeps its
bytes (Python's surrogate escapes), and messages show it with backslash escapes.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
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


def list_photos(root: str, what: str = "Folder") -> tuple[list[str], int]:
    """Every photo under `root`, recursively: (paths relative to root, sorted; how many non-image files skipped).

    Hidden files and folders are skipped, symlinks followed once (a target reached twice is
    listed once).

    Raises:
        ValueError: naming `root` when it is missing or a file, or naming the link of a symlink loop.
    """
    if not os.path.exists(root):
        raise ValueError(f"{what} {shown(root)!r} does not exist. Expected a folder of photos.")
    if not os.path.isdir(root):
        raise ValueError(f"{what} {shown(root)!r} is a file. Expected a folder of photos.")
    out, others, seen = [], 0, set()

    def walk(folder, rel, ancestors):
        nonlocal others
        for name in sorted(os.listdir(folder)):
            if name.startswith("."):
                continue
            path, sub = os.path.join(folder, name), os.path.join(rel, name) if rel else name
            real = os.path.realpath(path)
            if os.path.isdir(path):
                if real in ancestors:
                    raise ValueError(f"{what} {shown(root)!r} has a symlink loop: {shown(path)!r} points back to "
                                     f"{shown(real)!r}, a folder that contains it. Expected folders without loops.")
                if real not in seen:
                    seen.add(real)
                    walk(path, sub, ancestors | {real})
            elif os.path.isfile(path) and real not in seen:
                seen.add(real)
                if name.lower().endswith(IMAGE_EXTENSIONS):
                    out.append(sub)
                else:
                    others += 1

    top = os.path.realpath(root)
    seen.add(top)
    walk(root, "", {top})
    return sorted(out), others


class PhotoFolders(ImageFolder):
    """Your own photos: a labelled ImageFolder, unlabelled folders (any layout), optional val/test ImageFolders.

    Keys are `<part>/<path relative to that folder>` with part `labelled`, `val`, `test` or
    `unlabelled<i>`. Records of unlabelled photos have label None; the classes are the
    labelled folder's sub-folders, and only those.
    """

    def __init__(self, labelled: str, unlabelled=(), val: str | None = None, test: str | None = None):
        self.roots = {"labelled": os.path.abspath(labelled)}
        for i, root in enumerate(unlabelled):
            self.roots[f"unlabelled{i}"] = os.path.abspath(root)
        if val:
            self.roots["val"] = os.path.abspath(val)
        if test:
            self.roots["test"] = os.path.abspath(test)
        self.description = (f"labelled photos {shown(self.roots['labelled'])}, unlabelled "
                            f"{', '.join(shown(os.path.abspath(u)) for u in unlabelled) or 'none'}")
        self.non_images = 0

    def class_folders(self, part: str = "labelled") -> dict[str, list[str]]:
        """class -> photos (relative paths) of the ImageFolder `part`; ValueError naming it if it has none."""
        flag = {"labelled": "--data-dir", "val": "--val-dir", "test": "--test-dir"}[part]
        root = self.roots[part]
        photos, _ = list_photos(root, f"{flag} folder")
        out = defaultdict(list)
        for rel in photos:
            if os.sep in rel:
                out[rel.split(os.sep, 1)[0]].append(rel)
        if not out:
            raise ValueError(f"{flag} folder {shown(root)!r} has no class sub-folder with photos. Expected one "
                             f"sub-folder of photos ({', '.join(IMAGE_EXTENSIONS)}) per class.")
        return dict(out)

    def records(self) -> list[Record]:
        classes = self.class_folders("labelled")
        if len(classes) < 2:
            raise ValueError(f"--data-dir folder {shown(self.roots['labelled'])!r} has photos in {len(classes)} class "
                             f"folder ({sorted(shown(c) for c in classes)}). Expected at least 2 class sub-folders.")
        out = [Record(f"labelled/{rel}", cls) for cls, rels in sorted(classes.items()) for rel in rels]
        for part in ("val", "test"):
            if part in self.roots:
                other = self.class_folders(part)
                unknown = sorted(set(other) - set(classes))
                if unknown:
                    flag = f"--{part}-dir"
                    raise ValueError(f"{flag} folder {shown(self.roots[part])!r} has class(es) "
                                     f"{[shown(c) for c in unknown]} that the labelled folder lacks. Expected "
                                     f"classes among {sorted(shown(c) for c in classes)}.")
                out += [Record(f"{part}/{rel}", cls, part) for cls, rels in sorted(other.items()) for rel in rels]
        self.non_images = 0
        for part, root in self.roots.items():
            if part.startswith("unlabelled"):
                photos, others = list_photos(root, "--unlabelled-dir folder")
                self.non_images += others
                if not photos:
                    raise ValueError(f"--unlabelled-dir folder {shown(root)!r} has no photos"
                                     f"{f' (only {others} non-image file(s))' if others else ''}. Expected "
                                     f"photos ({', '.join(IMAGE_EXTENSIONS)}) anywhere under it.")
                out += [Record(f"{part}/{rel}", None) for rel in photos]
        return out

    def path(self, key: str) -> bytes:
        part, rel = key.split("/", 1)
        return os.fsencode(os.path.join(self.roots[part], rel))


def content_hashes(source, keys, workers: int = 4) -> dict[str, str]:
    """key -> SHA-256 of the photo's bytes (to find byte copies of validation and test photos)."""
    def digest(key):
        with open(source.path(key), "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return dict(zip(keys, pool.map(digest, keys)))


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


def open_source(d):
    """The photos of a `DataConfig`: your own folders when it names unlabelled folders, else the ImageFolder
    at `data_dir`, else the TFDS data set `tfds_name`."""
    if d.unlabelled_dirs:
        return PhotoFolders(d.data_dir, d.unlabelled_dirs, d.val_dir, d.test_dir)
    return ImageFolder(d.data_dir) if d.data_dir else TfdsSource(d.tfds_name)


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
