"""The exported artefacts: SavedModel layout and versions, both signatures, TF.js in Node, the float16 report."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from serving_helpers import (MIN_PHOTOS, assert_same_predictions, decode, exported, keras_probabilities,
                             require_photos)

@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return exported(tmp_path_factory)


@pytest.fixture(scope="module")
def keras_model(model):
    import keras

    return keras.models.load_model(model["keras_path"])


@pytest.mark.slow
def test_layout_and_report(model):
    export_dir, info = model["export_dir"], model["info"]
    version = os.path.join(model["base_path"], "1")
    assert os.path.exists(os.path.join(version, "saved_model.pb"))
    assert os.path.isdir(os.path.join(version, "variables"))
    for name in ("index.html", "app.js", "style.css", "tf.min.js", "model/model.json"):
        assert os.path.exists(os.path.join(export_dir, "web", name)), name
    assert not [d for d in os.listdir(os.path.join(export_dir, "saved_model")) if d.startswith(".")]
    with open(os.path.join(export_dir, "tfjs", "model.json")) as f:
        meta = json.load(f)["userDefinedMetadata"]
    assert meta["classes"] == model["classes"] and meta["image_size"] == 32
    assert info["version"] == 1 and info["classes"] == model["classes"]
    assert info["paths"]["saved_model"] == version
    assert info["test"]["photos"] >= MIN_PHOTOS
    assert set(info["test"]["accuracy"]) == {"keras", "tfjs", "tfjs_float16"}
    assert info["test"]["accuracy"]["tfjs"] == info["test"]["accuracy"]["keras"]
    assert info["test"]["float16_accuracy_change"] == pytest.approx(
        info["test"]["accuracy"]["tfjs_float16"] - info["test"]["accuracy"]["tfjs"])
    assert 0 < info["test"]["float16_max_abs_probability_change"] < 1e-2


@pytest.mark.slow
def test_float16_weights_are_about_half_the_size(model):
    def weight_bytes(d):
        return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".bin"))

    w32 = weight_bytes(os.path.join(model["export_dir"], "tfjs"))
    w16 = weight_bytes(os.path.join(model["export_dir"], "tfjs_float16"))
    assert w16 < 0.6 * w32, (w16, w32)  # int32 and small float32 constants stay as they are
    with open(os.path.join(model["export_dir"], "tfjs_float16", "model.json")) as f:
        weights = json.load(f)["weightsManifest"][0]["weights"]
    for w in weights:  # weight tensors go to float16; the crop arithmetic's scalars must stay exact
        quantized = w.get("quantization", {}).get("dtype") == "float16"
        assert quantized == (w["dtype"] == "float32" and int(np.prod(w["shape"])) >= 16), w
    assert any(w["dtype"] == "float32" and w["shape"] == [] for w in weights)


@pytest.mark.slow
def test_saved_model_cli_shows_both_signatures(model):
    cli = shutil.which("saved_model_cli")
    if cli is None:
        pytest.skip("saved_model_cli (installed with tensorflow) is not on PATH")
    out = subprocess.run([cli, "show", "--all", "--dir", os.path.join(model["base_path"], "1")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    for text in ("signature_def['serving_default']", "signature_def['predict_pixels']", "inputs['image_bytes']",
                 "inputs['pixels']", "outputs['probabilities']", "outputs['top_k_classes']", "DT_STRING",
                 "shape: (-1, -1, -1, 3)"):
        assert text in out.stdout, text


@pytest.mark.slow
def test_keras_both_signatures_and_tfjs_in_node_agree(model):
    import tensorflow as tf

    from ssl_keras import export

    photos = model["photos"]
    assert len(photos) >= MIN_PHOTOS
    reference = keras_probabilities(model)
    loaded = tf.saved_model.load(os.path.join(model["base_path"], "1"))

    encoded = tf.constant([tf.io.read_file(p).numpy() for p in photos])
    by_bytes = loaded.signatures["serving_default"](image_bytes=encoded)
    assert_same_predictions(reference, by_bytes["probabilities"].numpy(), "bytes signature")
    names = np.asarray(model["classes"])[reference.argmax(1)]
    assert [b.decode() for b in by_bytes["top_k_classes"].numpy()[:, 0]] == names.tolist()
    np.testing.assert_allclose(by_bytes["top_k_probabilities"].numpy()[:, 0], reference.max(1), atol=1e-4)

    images = [decode(p) for p in photos]
    by_pixels = np.concatenate([loaded.signatures["predict_pixels"](pixels=im[None])["probabilities"].numpy()
                                for im in images])  # each photo at its own size
    assert_same_predictions(reference, by_pixels, "pixel signature")

    in_node, ms = export.tfjs_predict(os.path.join(model["export_dir"], "tfjs"), images)
    assert_same_predictions(reference, in_node, "TF.js float32 in Node")
    in_node16, _ = export.tfjs_predict(os.path.join(model["export_dir"], "tfjs_float16"), images)
    assert_same_predictions(reference, in_node16, "TF.js float16 in Node", tolerance=1e-2)
    print(f"\nTF.js in Node: {ms:.1f} ms a photo; float16 max probability change "
          f"{np.abs(in_node16 - in_node).max():.1e}")


@pytest.mark.slow
def test_pixel_signature_takes_a_batch_of_any_size(model, keras_model):
    import tensorflow as tf

    loaded = tf.saved_model.load(os.path.join(model["base_path"], "1"))
    rng = np.random.default_rng(0)
    for shape in [(2, 17, 90, 3), (3, 200, 120, 3), (1, 32, 32, 3)]:
        pixels = rng.uniform(0, 255, shape).astype(np.float32)
        got = loaded.signatures["predict_pixels"](pixels=pixels)["probabilities"].numpy()
        np.testing.assert_allclose(got, keras_model(pixels, training=False), atol=1e-5)
        assert got.shape == (shape[0], len(model["classes"])) and got.dtype == np.float32


@pytest.mark.slow
def test_each_export_adds_a_version(model, keras_model, tmp_path):
    from ssl_keras import export

    base = tmp_path / "dog_breeds"
    shutil.copytree(model["base_path"], base)
    (base / "notes").mkdir()  # not a version: ignored
    assert export.next_version(str(base)) == 2
    path = export.export_saved_model(keras_model, model["classes"], str(base), top_k=2)
    assert path == str(base / "2") and os.path.exists(base / "2" / "saved_model.pb")
    assert sorted(os.listdir(tmp_path)) == ["dog_breeds"]  # no temporary folder left


@pytest.mark.slow
def test_a_crash_leaves_no_half_written_version(model, keras_model, tmp_path, monkeypatch):
    import keras

    from ssl_keras import export

    def crash(self, path, **kwargs):
        os.makedirs(os.path.join(path, "variables"), exist_ok=True)
        raise RuntimeError("disk full")

    archive = type(keras.export.ExportArchive())
    monkeypatch.setattr(archive, "write_out", crash)
    base = tmp_path / "saved_model" / "dog_breeds"
    with pytest.raises(RuntimeError, match="disk full"):
        export.export_saved_model(keras_model, model["classes"], str(base))
    assert os.listdir(base) == [] and os.listdir(tmp_path / "saved_model") == ["dog_breeds"]


@pytest.mark.slow
def test_errors_name_the_input(model, keras_model, tmp_path, monkeypatch):
    from ssl_keras import export

    with pytest.raises(ValueError, match="Got 2 class names for a model with 3 outputs"):
        export.export_saved_model(keras_model, ["a", "b"], str(tmp_path / "m"))
    monkeypatch.setattr(export, "REPO_ROOT", str(tmp_path))
    with pytest.raises(ValueError, match="npm ci"):
        export.export_all(keras_model, model["classes"], str(tmp_path / "export"))
    assert not os.path.exists(tmp_path / "export")  # checked before anything is written


def test_find_resizing_rejects_a_model_without_one():
    import keras

    from ssl_keras import export

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    with pytest.raises(ValueError, match="has no Resizing layer"):
        export.find_resizing(model)


def test_skips_without_photos(monkeypatch):
    import serving_helpers

    monkeypatch.setattr(serving_helpers, "DATA_DIR", "/nonexistent/dogs")
    with pytest.raises(pytest.skip.Exception, match="real photos are not there"):
        require_photos()


def _export_into(keras_model, classes, export_dir):
    from ssl_keras import export

    return export.export_all(keras_model, classes, str(export_dir), model_name="dog_breeds", top_k=2)


@pytest.mark.slow
@pytest.mark.parametrize("killed_in", ["tfjs", "tfjs_float16", "web", "publish"])
def test_a_killed_export_publishes_the_version_last_and_cleans_up_after_itself(model, keras_model, tmp_path,
                                                                            monkeypatch, killed_in):
    """Killed before the new version is published, the old version, tfjs/, web/ and export.json are what they were
    (or, for a part already swapped in, the new part with no version announcing it); the next export removes the
    hidden temporary folders the kill left and publishes a whole new set."""
    from ssl_keras import export

    export_dir = tmp_path / "export"
    first = _export_into(keras_model, model["classes"], export_dir)
    before = (export_dir / "export.json").read_text()

    class Killed(BaseException):
        pass

    def dying(*args, **kwargs):
        raise Killed

    if killed_in == "publish":
        monkeypatch.setattr(export, "publish_version", dying)
    elif killed_in == "web":
        monkeypatch.setattr(export, "build_web", dying)
    else:
        original = export.export_tfjs

        def tfjs(version_dir, output_dir, metadata, float16=False):
            if os.path.basename(output_dir) == killed_in:
                # killed mid-conversion: a hidden temporary folder is left, as a kill -9 would leave it
                os.makedirs(os.path.join(os.path.dirname(output_dir), f"{export.TMP_PREFIX}{killed_in}-x"))
                raise Killed
            return original(version_dir, output_dir, metadata, float16)

        monkeypatch.setattr(export, "export_tfjs", tfjs)
    with pytest.raises(Killed):
        _export_into(keras_model, model["classes"], export_dir)
    assert sorted(os.listdir(export_dir / "saved_model" / "dog_breeds")) == ["1"]  # no new version published
    assert (export_dir / "export.json").read_text() == before
    monkeypatch.undo()

    second = _export_into(keras_model, model["classes"], export_dir)
    assert second["version"] == first["version"] + 1
    assert sorted(os.listdir(export_dir / "saved_model" / "dog_breeds")) == ["1", "2"]
    leftovers = [p for p in export_dir.rglob(f"{export.TMP_PREFIX}*")]
    assert leftovers == []
    with open(export_dir / "tfjs" / "model.json") as f:
        assert json.load(f)["userDefinedMetadata"]["version"] == second["version"]


@pytest.mark.slow
def test_export_json_names_the_run_and_the_model_it_came_from(model):
    info = model["info"]
    assert info["source"]["run_dir"] == os.path.abspath(model["run_dir"])
    assert info["source"]["model"] == os.path.abspath(model["keras_path"])
    assert info["wall_time_s"] > 0
