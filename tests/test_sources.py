"""sources.py: the ImageFolder and TFDS sources, and the photo check (the project's own decoder)."""

import os
from collections import Counter

import numpy as np
import pytest

from ssl_keras import preprocessing, sources
from ssl_keras.config import DataConfig

S = 24


# --- the image folder and the bad-file scan ------------------------------------------------------------------


def test_image_folder_records(image_folder):
    records = sources.ImageFolder(image_folder.root).records()
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
    assert sorted(r.key for r in sources.ImageFolder(str(tmp_path)).records()) == ["a/x.jpg", "b/x.jpg"]


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist or is not a folder"):
        sources.ImageFolder(str(tmp_path / "nope"))
    (tmp_path / "beagle").mkdir()
    (tmp_path / "beagle" / "x.jpg").write_bytes(b"")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match=r"photos in 1 class folder\(s\) \(\['beagle'\]\). Expected at least 2"):
        sources.ImageFolder(str(tmp_path)).records()


def test_scan_images_skips_broken_files_with_reasons(image_folder):
    source = sources.ImageFolder(image_folder.root)
    keys = [r.key for r in source.records()]
    good, bad = sources.scan_images(source, keys)
    reasons = dict(bad)
    assert set(reasons) == set(image_folder.bad.values())
    assert reasons["beagle/empty.jpg"] == "empty file"
    for name in ("corrupt.jpg", "truncated.jpg", "text.jpg"):
        assert reasons[f"beagle/{name}"], name
    assert "truncated" in reasons["beagle/truncated.jpg"]
    assert good == [k for k in keys if k not in reasons]  # order kept
    assert set(image_folder.odd.values()) <= set(good)


# --- TFDS ----------------------------------------------------------------------------------------------------

N_MOCK = 5


def _import_tfds():
    try:
        import tensorflow_datasets as tfds

        tfds.testing.mock_data, tfds.decode.SkipDecoding  # noqa: B018 (a broken install imports half-way)
    except Exception:  # a broken install, e.g. tensorflow-metadata built for a newer protobuf
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
        source = sources.TfdsSource("stanford_dogs")
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
        resize = preprocessing.resizing(S)
        decoded = list(source.dataset(keys, labels).map(lambda b, y: preprocessing.decode_resized(b, resize))
                       .as_numpy_iterator())
    assert len(decoded) == 3
    for image in decoded:
        assert image.shape == (S, S, 3) and image.dtype == np.float32
    assert not np.array_equal(decoded[0], decoded[1])


def test_open_source_picks_the_folder_when_given(image_folder):
    assert isinstance(sources.open_source(DataConfig(data_dir=image_folder.root)), sources.ImageFolder)


# --- odd files: every photo the scan keeps decodes in the tf.data pipeline -------------------------------------


@pytest.fixture(scope="module")
def odd_folder(image_folder, tmp_path_factory):
    """Two classes: BMP, GIF and PNG variants Pillow writes (1-bit, palette, greyscale, RGBA, 16-bit, animated),
    and a photo whose file name is not valid UTF-8."""
    from PIL import Image

    root = tmp_path_factory.mktemp("odd")
    (root / "a").mkdir()
    (root / "b").mkdir()
    with Image.open(image_folder.source_photo) as im:
        photo = im.convert("RGB").resize((40, 30))
    variants = {
        "bmp_1bit.bmp": photo.convert("1"), "bmp_palette.bmp": photo.convert("P"),
        "bmp_grey.bmp": photo.convert("L"), "bmp_rgb.bmp": photo, "bmp_rgba.bmp": photo.convert("RGBA"),
        "png_16bit.png": photo.convert("I;16"), "png_rgba.png": photo.convert("RGBA"),
        "png_palette.png": photo.convert("P"), "gif.gif": photo.convert("P"),
    }
    for name, image in variants.items():
        image.save(root / "a" / name)
    photo.save(root / "a" / "animated.gif", save_all=True, append_images=[photo.rotate(90)], duration=100)
    photo.save(root / "b" / "rgb.jpg", "JPEG")
    os.makedirs(os.fsencode(root / "b"), exist_ok=True)
    with open(os.path.join(os.fsencode(root / "b"), b"caf\xe9.jpg"), "wb") as f:  # Latin-1, not UTF-8
        photo.save(f, "JPEG")
    return root


def test_every_photo_the_scan_keeps_decodes_in_tf_data_and_the_rest_are_counted(odd_folder):
    source = sources.ImageFolder(str(odd_folder))
    keys = [r.key for r in source.records()]
    assert len(keys) == 12
    good, bad = sources.scan_images(source, keys)
    assert len(good) + len(bad) == len(keys)
    for key, why in bad:
        assert "TensorFlow can decode" in why, (key, why)
    resize = preprocessing.resizing(S)
    decoded = list(source.dataset(good, [0] * len(good)).map(lambda b, y: preprocessing.decode_resized(b, resize))
                   .as_numpy_iterator())
    assert len(decoded) == len(good)  # not one of the kept photos stops the pipeline
    for image in decoded:
        assert image.shape == (S, S, 3) and np.isfinite(image).all()
    assert "b/rgb.jpg" in good and "a/bmp_rgb.bmp" in good and "a/animated.gif" in good


def test_a_file_name_that_is_not_utf8_is_kept_as_it_is(odd_folder):
    source = sources.ImageFolder(str(odd_folder))
    (key,) = [r.key for r in source.records() if "caf" in r.key]
    assert source.path(key) == os.path.join(os.fsencode(odd_folder), b"b", b"caf\xe9.jpg")  # the bytes on disk
    assert sources.shown(key) == "b/caf\\xe9.jpg"  # and printable
    good, bad = sources.scan_images(source, [key])
    assert good == [key] and bad == []
    (image,), = [list(source.dataset([key], [0]).map(lambda b, y: preprocessing.decode(b)).as_numpy_iterator())]
    assert image.shape == (30, 40, 3)
    import json

    assert json.loads(json.dumps({"k": key})) == {"k": key}  # split.json keeps it too
