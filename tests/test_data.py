"""data.py: declared splits, class choice, the seeded split, the bad-file scan, decoding, pipelines, TFDS."""

import os
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf

from ssl_keras import data
from ssl_keras.config import StageConfig
from ssl_keras.data import Record

S = 24  # image size for the pipeline tests


# --- declared splits and class choice ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, split",
    [
        ("imagewoof_train_ILSVRC2012_val_00001564.jpg", "train"),  # the first split token wins
        ("imagewoof_train_n02099601_1234.jpg", "train"),
        ("imagewoof_val_n02086240_1.jpg", "test"),
        ("beagle/imagewoof_val_n02088364_7850.jpg", "test"),
        ("stanforddogs_crop224_n02110958_10.jpg", None),
        ("photo-test-3.PNG", "test"),
        ("x_valid_1.jpg", "test"),
        ("trainer_1.jpg", None),  # a whole token, not a prefix
        ("train/photo.jpg", None),  # the folder does not count, only the file name
    ],
)
def test_declared_split(name, split):
    assert data.declared_split(name) == split


@pytest.fixture(scope="module")
def dog_records(dogs_dir):
    return data.ImageFolder(dogs_dir).records()


@pytest.fixture(scope="module")
def imagewoof_breeds(dogs_dir):
    return sorted(d for d in os.listdir(dogs_dir) if os.path.isdir(os.path.join(dogs_dir, d))
                  and any(f.startswith("imagewoof_") for f in os.listdir(os.path.join(dogs_dir, d))))


def test_choose_classes_default_is_the_ten_imagewoof_breeds(dog_records, imagewoof_breeds):
    assert len(imagewoof_breeds) == 10
    chosen = data.choose_classes(dog_records)
    assert chosen == imagewoof_breeds  # sorted by name
    # ... because they are the ten with the most photos.
    counts = Counter(r.label for r in dog_records)
    others = set(counts) - set(chosen)
    assert others
    assert min(counts[c] for c in chosen) > max(counts[c] for c in others)


def test_choose_classes_breaks_ties_by_name():
    records = [Record(f"{c}/{i}.jpg", c) for c, n in (("b", 3), ("a", 3), ("c", 3), ("d", 1)) for i in range(n)]
    assert data.choose_classes(records, num_classes=2) == ["a", "b"]


def test_choose_classes_as_given_and_checked(dog_records):
    assert data.choose_classes(dog_records, ("samoyed", "beagle")) == ["beagle", "samoyed"]
    with pytest.raises(ValueError, match=r"Unknown class\(es\) \['poodle'\]"):
        data.choose_classes(dog_records, ("beagle", "poodle"))
    with pytest.raises(ValueError, match="`num_classes` is 50 but the data has only 21 classes"):
        data.choose_classes(dog_records, num_classes=50)


# --- the split -----------------------------------------------------------------------------------------------


def _keys(split, part):
    return [item[0] if isinstance(item, list) else item for item in split[part]]


PARTS = ("labelled", "val", "test", "unlabelled", "unlabelled_val")


@pytest.fixture(scope="module", params=["ten imagewoof breeds", "beagle pug samoyed"])
def real_split(request, dog_records):
    """The default choice (every class has declared test photos; the other breeds have none), and a mix:
    pug declares no test photos, and the seven imagewoof breeds left out do."""
    if request.param == "ten imagewoof breeds":
        classes = data.choose_classes(dog_records)
    else:
        classes = ["beagle", "pug", "samoyed"]
    return classes, data.make_split(dog_records, classes, labels_per_class=57, val_per_class=20, seed=0)


def test_split_parts_are_pairwise_disjoint_and_lose_nothing(dog_records, real_split):
    classes, split = real_split
    keys = {part: _keys(split, part) for part in PARTS}
    for part in PARTS:
        assert len(set(keys[part])) == len(keys[part]), f"duplicates in {part}"
    for i, a in enumerate(PARTS):
        for b in PARTS[i + 1:]:
            assert not set(keys[a]) & set(keys[b]), f"{a} and {b} overlap"
    # No cap was set: every photo is somewhere, except the declared test photos of the classes left out.
    everything = set().union(*keys.values())
    assert everything == {r.key for r in dog_records if r.declared != "test" or r.label in classes}


def test_split_keeps_declared_test_photos_out_of_training(dog_records, real_split):
    classes, split = real_split
    declared_test = {r.key for r in dog_records if r.declared == "test"}
    assert declared_test
    assert set(_keys(split, "test")) >= {k for k in declared_test if k.split("/")[0] in classes}
    for part in ("labelled", "val", "unlabelled", "unlabelled_val"):
        assert not set(_keys(split, part)) & declared_test, f"a declared test photo is in {part}"


def test_split_test_part_per_class(dog_records, real_split):
    classes, split = real_split
    counts = Counter(r.label for r in dog_records)
    declared = Counter(r.label for r in dog_records if r.declared == "test")
    for i, cls in enumerate(classes):
        test = [k for k, y in split["test"] if y == i]
        # The declared test photos when the class has some, else a seeded 20 % of its photos.
        assert len(test) == (declared[cls] or round(0.2 * counts[cls])), cls


def test_split_counts_and_labels_per_class(real_split):
    classes, split = real_split
    assert split["classes"] == classes
    for part, n in (("labelled", 57), ("val", 20)):
        per_class = Counter(y for _, y in split[part])
        assert per_class == {i: n for i in range(len(classes))}
        for key, y in split[part]:
            assert classes[y] == key.split("/")[0]
    pool = len(split["unlabelled"]) + len(split["unlabelled_val"])
    assert len(split["unlabelled_val"]) == min(1000, pool // 10)


def test_unlabelled_pool_includes_other_breeds(dog_records, real_split):
    classes, split = real_split
    breeds = {k.split("/")[0] for k in _keys(split, "unlabelled") + _keys(split, "unlabelled_val")}
    assert breeds == {r.label for r in dog_records}  # the breeds left out, and the leftovers of the chosen


def test_split_is_seeded(dog_records, real_split):
    classes, split = real_split
    kwargs = dict(labels_per_class=57, val_per_class=20)
    assert data.make_split(dog_records, classes, seed=0, **kwargs) == split
    other = data.make_split(dog_records, classes, seed=1, **kwargs)
    assert other["labelled"] != split["labelled"]
    declared = {r.key for r in dog_records if r.declared == "test"}
    # Declared test photos do not depend on the seed.
    assert [k for k in other["test"] if k[0] in declared] == [k for k in split["test"] if k[0] in declared]


def test_split_caps_test_and_unlabelled(dog_records):
    classes = ["beagle", "dingo", "samoyed"]
    split = data.make_split(dog_records, classes, labels_per_class=5, val_per_class=2, max_test_per_class=7,
                            max_unlabelled=300, seed=0)
    assert Counter(y for _, y in split["test"]) == {0: 7, 1: 7, 2: 7}
    assert all(k.split("/")[1].startswith("imagewoof_val_") for k in _keys(split, "test"))
    assert len(split["unlabelled"]) == 270 and len(split["unlabelled_val"]) == 30
    # The cap draws from its own generator: the same seed keeps the same labelled, validation and unlabelled
    # photos with or without it (`quick` caps the test photos, `default` does not).
    uncapped = data.make_split(dog_records, classes, labels_per_class=5, val_per_class=2, max_unlabelled=300, seed=0)
    assert len(uncapped["test"]) > len(split["test"])
    for part in ("labelled", "val", "unlabelled", "unlabelled_val"):
        assert split[part] == uncapped[part], part


def _synthetic(**sizes):
    """Records with no declared split: `a=30` -> a/0.jpg ... a/29.jpg."""
    return [Record(f"{c}/{i}.jpg", c) for c, n in sizes.items() for i in range(n)]


def test_split_without_declared_test_uses_test_fraction():
    split = data.make_split(_synthetic(a=50, b=40, c=10), ["a", "b"], labels_per_class=10, val_per_class=5,
                            test_fraction=0.2, seed=0)
    assert Counter(y for _, y in split["test"]) == {0: 10, 1: 8}
    assert Counter(y for _, y in split["labelled"]) == {0: 10, 1: 10}
    # 25 + 17 leftovers of a and b, and all 10 photos of c.
    assert len(split["unlabelled"]) + len(split["unlabelled_val"]) == 52


def test_split_with_too_few_photos_names_the_class():
    with pytest.raises(ValueError, match="Class 'b' has 4 photos outside its test split") as e:
        data.make_split(_synthetic(a=30, b=5), ["a", "b"], labels_per_class=10, val_per_class=2, seed=0)
    assert "labels_per_class + val_per_class = 10 + 2 = 12" in str(e.value)


# --- the image folder and the bad-file scan ------------------------------------------------------------------


def test_image_folder_records(image_folder):
    records = data.ImageFolder(image_folder.root).records()
    assert sorted({r.label for r in records}) == image_folder.classes
    keys = {r.key for r in records}
    assert keys == set(image_folder.photos) | set(image_folder.bad.values()) | set(image_folder.odd.values())
    declared = {r.key: r.declared for r in records}
    assert declared["beagle/corrupt.jpg"] is None
    assert Counter(declared[k] for k in image_folder.photos) == {"train": 8, "test": 4, None: 4}


def test_image_folder_ignores_hidden_and_non_image_files(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        (tmp_path / cls / "x.jpg").write_bytes(b"")
        (tmp_path / cls / ".hidden.jpg").write_bytes(b"")
        (tmp_path / cls / "notes.txt").write_text("")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "y.jpg").write_bytes(b"")
    assert sorted(r.key for r in data.ImageFolder(str(tmp_path)).records()) == ["a/x.jpg", "b/x.jpg"]


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist or is not a folder"):
        data.ImageFolder(str(tmp_path / "nope"))
    (tmp_path / "beagle").mkdir()
    (tmp_path / "beagle" / "x.jpg").write_bytes(b"")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match=r"photos in 1 class folder\(s\) \(\['beagle'\]\). Expected at least 2"):
        data.ImageFolder(str(tmp_path)).records()


def test_scan_images_skips_broken_files_with_reasons(image_folder):
    source = data.ImageFolder(image_folder.root)
    keys = [r.key for r in source.records()]
    good, bad = data.scan_images(source, keys)
    reasons = dict(bad)
    assert set(reasons) == set(image_folder.bad.values())
    assert reasons["beagle/empty.jpg"] == "empty file"
    for name in ("corrupt.jpg", "truncated.jpg", "text.jpg"):
        assert reasons[f"beagle/{name}"], name
    assert "truncated" in reasons["beagle/truncated.jpg"]
    assert good == [k for k in keys if k not in reasons]  # order kept
    assert set(image_folder.odd.values()) <= set(good)


def _decode_all(source, keys, size=S):
    resize = data.resizer(size)
    ds = source.dataset(keys, [0] * len(keys)).map(lambda b, y: data.decode(b, resize))
    return list(ds.as_numpy_iterator())


def test_kept_odd_files_decode_in_tf_data(image_folder):
    source = data.ImageFolder(image_folder.root)
    odd = [image_folder.odd[n] for n in ("greyscale.jpg", "cmyk.jpg", "png_named.jpg")]
    grey, cmyk, png = _decode_all(source, odd)
    (reference,) = _decode_all(source, [os.path.relpath(image_folder.source_photo, image_folder.root)])
    for image in (grey, cmyk, png, reference):
        assert image.shape == (S, S, 3) and image.dtype == np.uint8
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    diff = lambda a, b: np.abs(a.astype(float) - b.astype(float)).mean()  # noqa: E731
    assert diff(png, reference) < 3  # lossless copy of the photo (the photo's own JPEG noise aside)
    assert diff(cmyk, reference) < 12  # CMYK is converted back to RGB, not read as a negative
    assert diff(grey.mean(-1), reference.mean(-1)) < 12


def test_skipped_files_would_break_tf_decoding(image_folder):
    """The scan is there for a reason: each file it skips stops a tf.data pipeline."""
    source = data.ImageFolder(image_folder.root)
    for key in image_folder.bad.values():
        with pytest.raises(tf.errors.InvalidArgumentError):
            _decode_all(source, [key])


# --- pipelines -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_items(image_folder):
    """[[key, label], ...] of the readable photos of beagle (0) and samoyed (1), odd files included."""
    keys = [k for k in image_folder.photos if not k.startswith("pug/")] + list(image_folder.odd.values())
    return [[k, 0 if k.startswith("beagle/") else 1] for k in sorted(keys)]


def test_labelled_dataset_shapes_dtypes_and_order(image_folder, good_items):
    source = data.ImageFolder(image_folder.root)
    batches = list(data.labelled_dataset(source, good_items, S, 4).as_numpy_iterator())
    assert [len(y) for _, y in batches] == [4, 4, 4, 3]
    for x, y in batches:
        assert x.dtype == np.float32 and x.shape[1:] == (S, S, 3)
        assert x.min() >= 0 and x.max() <= 255 and x.max() > 1  # pixels 0..255, not rescaled
        assert y.dtype == np.int32
    assert np.concatenate([y for _, y in batches]).tolist() == [y for _, y in good_items]
    decoded = np.stack(_decode_all(source, [k for k, _ in good_items])).astype(np.float32)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches]), decoded)


def test_labelled_dataset_training_shuffles_the_same_photos(image_folder, good_items):
    source = data.ImageFolder(image_folder.root)
    ds = data.labelled_dataset(source, good_items, S, 4, training=True, stage=StageConfig(augment=False), seed=0)
    y = np.concatenate([y for _, y in ds.as_numpy_iterator()])
    assert sorted(y.tolist()) == sorted(lab for _, lab in good_items)


def test_empty_datasets_are_refused(image_folder):
    source = data.ImageFolder(image_folder.root)
    with pytest.raises(ValueError, match="No photos"):
        data.labelled_dataset(source, [], S, 4)
    with pytest.raises(ValueError, match="No unlabelled photos"):
        data.pretext_dataset(source, [], S, 4)


def test_pretext_dataset_makes_four_rotations_per_photo(image_folder):
    source = data.ImageFolder(image_folder.root)
    keys = image_folder.photos[:6]
    batches = list(data.pretext_dataset(source, keys, S, 4).as_numpy_iterator())
    assert [len(x) for x, _ in batches] == [16, 8]  # B photos -> 4B samples
    for x, y in batches:
        b = len(x) // 4
        assert x.dtype == np.float32 and x.shape[1:] == (S, S, 3)
        assert y.dtype == np.int32 and y.tolist() == [0] * b + [1] * b + [2] * b + [3] * b
        for k in range(4):
            np.testing.assert_array_equal(x[k * b:(k + 1) * b], np.rot90(x[:b], k, axes=(1, 2)))
    originals = np.stack(_decode_all(source, keys)).astype(np.float32)
    np.testing.assert_array_equal(np.concatenate([x[:len(x) // 4] for x, _ in batches]), originals)


# --- augmentation: horizontal flips only ---------------------------------------------------------------------


def test_augmenter_layers():
    import keras

    assert data.augmenter(StageConfig(augment=False), 0) is None
    assert data.augmenter(StageConfig(flip=False, translate=0.0, zoom=0.0), 0) is None
    aug = data.augmenter(StageConfig(), 0)
    kinds = [type(layer) for layer in aug.layers]
    assert kinds == [keras.layers.RandomFlip, keras.layers.RandomTranslation, keras.layers.RandomZoom]
    assert aug.layers[0].mode == "horizontal"


def _match(image, candidates):
    """Index of the candidate `image` equals exactly, else None."""
    for i, c in enumerate(candidates):
        if image.shape == c.shape and np.array_equal(image, c):
            return i
    return None


def test_augmentation_flips_horizontally_never_vertically(image_folder, good_items):
    source = data.ImageFolder(image_folder.root)
    originals = np.stack(_decode_all(source, [k for k, _ in good_items])).astype(np.float32)
    mirrors, upside_down = originals[:, :, ::-1], originals[:, ::-1]
    stage = StageConfig(flip=True, translate=0.0, zoom=0.0)
    ds = data.labelled_dataset(source, good_items, S, 5, training=True, stage=stage, seed=1)
    seen = Counter()
    for _ in range(3):  # three epochs
        for x, _ in ds.as_numpy_iterator():
            for image in x:
                assert _match(image, upside_down) is None or _match(image, originals) is not None
                if _match(image, originals) is not None:
                    seen["same"] += 1
                else:
                    assert _match(image, mirrors) is not None, "augmented image is neither the photo nor its mirror"
                    seen["mirrored"] += 1
    assert seen["same"] > 0 and seen["mirrored"] > 0


def test_pretext_augmentation_happens_before_the_rotations(image_folder):
    source = data.ImageFolder(image_folder.root)
    keys = image_folder.photos[:8]
    originals = np.stack(_decode_all(source, keys)).astype(np.float32)
    stage = StageConfig(flip=True, translate=0.0, zoom=0.0)
    for x, y in data.pretext_dataset(source, keys, S, 8, training=True, stage=stage, seed=3).as_numpy_iterator():
        b = len(x) // 4
        for image in x[:b]:
            assert _match(image, originals) is not None or _match(image, originals[:, :, ::-1]) is not None
        for k in range(4):  # every rotation is of the same (possibly mirrored) photo: labels stay true
            np.testing.assert_array_equal(x[k * b:(k + 1) * b], np.rot90(x[:b], k, axes=(1, 2)))


# --- TFDS ----------------------------------------------------------------------------------------------------

N_MOCK = 5


def _import_tfds():
    try:
        import tensorflow_datasets as tfds

        tfds.testing.mock_data, tfds.decode.SkipDecoding  # noqa: B018 (a broken install imports half-way)
    except Exception as e:  # a broken install, e.g. tensorflow-metadata built for a newer protobuf
        try:
            import tensorflow_metadata.proto  # noqa: F401 (the usual culprit: it names the versions)
        except Exception as cause:
            e = cause
        pytest.skip(f"tensorflow_datasets cannot be imported here: {type(e).__name__}: {str(e)[:240]}")
    return tfds


@pytest.fixture(scope="module")
def tfds_metadata(tmp_path_factory):
    """stanford_dogs' metadata with its real split names, so that `mock_data` knows them.

    Without metadata files `mock_data` cannot tell which splits exist (`info.splits` is empty).
    """
    tfds = _import_tfds()
    root = tmp_path_factory.mktemp("tfds")
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE):
        builder = tfds.builder("stanford_dogs")
        builder.info.set_splits(tfds.core.SplitDict(
            [tfds.core.SplitInfo(name=s, shard_lengths=[N_MOCK], num_bytes=0) for s in ("train", "test")]))
        out = root / "stanford_dogs" / str(builder.version)
        out.mkdir(parents=True)
        builder.info.write_to_directory(str(out))
    return tfds, str(root)


def test_tfds_source_records_and_encoded_images(tfds_metadata):
    tfds, metadata_dir = tfds_metadata
    with tfds.testing.mock_data(num_examples=N_MOCK, data_dir=metadata_dir):
        source = data.TfdsSource("stanford_dogs")
        records = source.records()
        assert sorted(r.key for r in records) == sorted(f"{s}/{i}" for s in ("test", "train") for i in range(N_MOCK))
        for r in records:
            assert r.declared == ("test" if r.key.startswith("test/") else "train")
            assert r.label in source.names
        # What the source reads, straight from TFDS: encoded image bytes and labels, in order.
        decoders = tfds.decode.PartialDecoding({"image": True, "label": True},
                                               decoders={"image": tfds.decode.SkipDecoding()})
        truth = list(source.builder.as_dataset(split="test", shuffle_files=False, decoders=decoders)
                     .as_numpy_iterator())
        label_of = {r.key: r.label for r in records}
        assert [label_of[f"test/{i}"] for i in range(N_MOCK)] == [source.names[ex["label"]] for ex in truth]

        keys, labels = ["test/3", "train/1", "test/0"], [2, 1, 0]
        pairs = list(source.dataset(keys, labels).as_numpy_iterator())
        assert [y for _, y in pairs] == [0, 2, 1]  # grouped by split (test, train), in index order
        assert isinstance(pairs[0][0], bytes)
        assert pairs[0][0] == truth[0]["image"] and pairs[1][0] == truth[3]["image"]
        resize = data.resizer(S)
        decoded = list(source.dataset(keys, labels).map(lambda b, y: data.decode(b, resize)).as_numpy_iterator())
    assert len(decoded) == 3
    for image in decoded:
        assert image.shape == (S, S, 3) and image.dtype == np.uint8
    assert not np.array_equal(decoded[0], decoded[1])


def test_open_source_picks_the_folder_when_given(image_folder):
    assert isinstance(data.open_source(image_folder.root, "stanford_dogs"), data.ImageFolder)
