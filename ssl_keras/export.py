"""A trained classifier out to the world: SavedModel (TF Serving), TF.js graph model, offline web page.

Layout written under `export_dir`:

    saved_model/<model_name>/<version>/   what TF Serving reads; versions 1, 2, ... one per export
    tfjs/                                  TF.js graph model of the pixel signature (float32 weights)
    tfjs_float16/                          the same with float16 weights (half the download)
    web/                                   static page: index.html, app.js, style.css, tf.min.js, model/
    export.json                            the run and model it came from, paths, sizes, accuracies

Every part is written to a hidden temporary folder and renamed into place. The new
SavedModel version is published last, after `tfjs/`, `tfjs_float16/` and `web/`,
and `export.json` after it; temporary folders a killed export left are removed at
the start of the next.

The SavedModel has two signatures. `serving_default` takes a batch of encoded
JPEG/PNG/GIF/BMP photos (`image_bytes`, tf.string; REST clients send
`{"b64": ...}`); `predict_pixels` takes float pixels (N, H, W, 3), 0..255, of
any size. Both return `probabilities` (N, C) float32, `top_k_classes` (N, k)
class names and `top_k_probabilities` (N, k); the class names are a constant
inside the graph.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from ssl_keras import files, preprocessing, quiet

BYTES_SIGNATURE = "serving_default"
PIXELS_SIGNATURE = "predict_pixels"
BYTES_INPUT = "image_bytes"
PIXELS_INPUT = "pixels"
OUTPUTS = ("probabilities", "top_k_classes", "top_k_probabilities")
WEB_FILES = ("index.html", "app.js", "style.css")
FLOAT16_MIN_VALUES = 16
TMP_PREFIX = ".export-tmp-"
WEB_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
NODE_PREDICT = os.path.join(WEB_SOURCE, "predict_node.mjs")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def find_resizing(model) -> keras.layers.Resizing:
    """The model's first `Resizing` layer (searched through nested models).

    Raises:
        ValueError: when the model has none.
    """
    for layer in model.layers:
        if isinstance(layer, keras.layers.Resizing):
            return layer
        if isinstance(layer, keras.Model):
            try:
                return find_resizing(layer)
            except ValueError:
                pass
    raise ValueError(f"Model {model.name!r} has no Resizing layer. Expected a classifier from "
                     "`ssl_keras.models.build_classifier`, which resizes inside the model.")


def decode_batch(images, resize):
    """(N,) encoded photos -> (N, S, S, 3) float32 pixels, each by `preprocessing.decode_resized`.

    Photos differ in size, so each is resized before they are stacked; the
    model's own resize then maps S x S to itself, which changes nothing.
    """
    size = resize.height
    return tf.map_fn(lambda encoded: preprocessing.decode_resized(encoded, resize), images,
                     fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))


def next_version(base_path: str) -> int:
    """1 + the largest integer-named version folder under `base_path` (1 when there is none)."""
    versions = [int(d) for d in os.listdir(base_path) if d.isdigit()] if os.path.isdir(base_path) else []
    return max(versions, default=0) + 1


def export_saved_model(model, class_names, base_path: str, top_k: int = 5, publish: bool = True) -> str:
    """Writes `base_path/<next version>/` with the two signatures; returns that folder.

    The version is written to a hidden temporary folder beside `base_path` and renamed
    into place, so TF Serving never sees a half-written version. With `publish=False`
    the temporary folder is returned instead, for `publish_version` to rename later.

    Args:
        model: a classifier from pixels (B, H, W, 3) 0..255 to (B, C) softmax.
        class_names: the C class names, in output order.
        base_path: the model base path TF Serving is pointed at.
        top_k: class names returned per photo (capped at C).

    Returns:
        The path of the new version folder.
    """
    num_classes = int(model.output_shape[-1])
    if len(class_names) != num_classes:
        raise ValueError(f"Got {len(class_names)} class names for a model with {num_classes} outputs. "
                         "Expected one name per output.")
    k = min(int(top_k), num_classes)
    names = tf.constant(list(class_names), tf.string)
    resize = find_resizing(model)

    def outputs(probabilities):
        top = tf.math.top_k(probabilities, k=k)
        return {"probabilities": probabilities, "top_k_classes": tf.gather(names, top.indices),
                "top_k_probabilities": top.values}

    def from_pixels(pixels):
        return outputs(tf.cast(model(pixels, training=False), tf.float32))

    def from_bytes(images):
        return from_pixels(decode_batch(images, resize))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(BYTES_SIGNATURE, from_bytes,
                         input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)])
    archive.add_endpoint(PIXELS_SIGNATURE, from_pixels,
                         input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name=PIXELS_INPUT)])
    parent = os.path.dirname(os.path.abspath(base_path))
    os.makedirs(base_path, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=TMP_PREFIX + "version-", dir=parent)
    try:
        archive.write_out(tmp, verbose=False)
        os.chmod(tmp, 0o755)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return publish_version(tmp, base_path) if publish else tmp


def publish_version(tmp: str, base_path: str) -> str:
    """Renames a SavedModel written by `export_saved_model(publish=False)` to `base_path/<next version>`."""
    path = os.path.join(base_path, str(next_version(base_path)))
    os.rename(tmp, path)
    return path


def remove_leftovers(*folders: str) -> list[str]:
    """Removes the hidden temporary folders (`.export-tmp-*`) a killed export left in `folders`."""
    removed = []
    for folder in folders:
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if name.startswith(TMP_PREFIX):
                    shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
                    removed.append(os.path.join(folder, name))
    return removed


def _replace_dir(build, dest: str) -> None:
    """Calls `build(tmp_dir)`, then swaps the result in at `dest` (no half-written `dest` on a crash)."""
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.path.basename(dest)}-", dir=parent)
    try:
        build(tmp)
        os.chmod(tmp, 0o755)
        old = os.path.join(parent, f"{TMP_PREFIX}old-{os.path.basename(dest)}")
        shutil.rmtree(old, ignore_errors=True)
        if os.path.exists(dest):
            os.rename(dest, old)
        os.rename(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def export_tfjs(version_dir: str, output_dir: str, metadata: dict, float16: bool = False) -> str:
    """Converts the pixel signature of a SavedModel version to a TF.js graph model in `output_dir`.

    TF.js has no string `Gather`, so only the numeric output `probabilities` is
    converted; the class names travel in `model.json` (`userDefinedMetadata`).

    Args:
        version_dir: a folder written by `export_saved_model`.
        output_dir: replaced by `model.json` and its weight shards.
        metadata: JSON-ready values stored as `userDefinedMetadata`.
        float16: store the weight tensors (not the small constants) as float16: half the
            size; TF.js widens them to float32 on load.

    Returns:
        `output_dir`.
    """
    # tensorflowjs imports tensorflow_decision_forests, whose welcome banner imports IPython
    # whenever stdout is not a terminal (pytest, pipes); without IPython that import fails.
    os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
    from tensorflowjs.converters import tf_saved_model_conversion_v2 as tfjs_conversion

    loaded = tf.saved_model.load(version_dir)
    if PIXELS_SIGNATURE not in loaded.signatures:
        raise ValueError(f"SavedModel {version_dir!r} has signatures {sorted(loaded.signatures)}. "
                         f"Expected {PIXELS_SIGNATURE!r} (written by `export_saved_model`).")
    signature = loaded.signatures[PIXELS_SIGNATURE]
    module = tf.Module()
    module.loaded = loaded

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name=PIXELS_INPUT)])
    def probabilities(pixels):
        return {"probabilities": signature(pixels=pixels)["probabilities"]}

    module.probabilities = probabilities

    def convert(saved, out, quantization=None):
        with quiet.stderr_to_devnull():  # grappler's "Starting new session" lines
            tfjs_conversion.convert_tf_saved_model(saved, out, signature_def="serving_default",
                                                   metadata=dict(metadata), use_structured_outputs_names=True,
                                                   quantization_dtype_map=quantization)

    def build(tmp):
        with tempfile.TemporaryDirectory() as numeric:
            tf.saved_model.save(module, os.path.join(numeric, "saved"), signatures={"serving_default": probabilities})
            if not float16:
                convert(os.path.join(numeric, "saved"), tmp)
                return
            probe = os.path.join(numeric, "float32")
            convert(os.path.join(numeric, "saved"), probe)
            convert(os.path.join(numeric, "saved"), tmp, {"float16": _large_float_weights(probe)})

    _replace_dir(build, output_dir)
    return output_dir


def _large_float_weights(tfjs_dir: str, min_values: int = FLOAT16_MIN_VALUES) -> list[str]:
    """Names of the float32 weights of a TF.js model with at least `min_values` values.

    Only these go to float16: the scalar constants of the crop arithmetic in the
    Resizing layer (1/48 and the like) must stay exact, or the crop moves by a pixel.
    """
    with open(os.path.join(tfjs_dir, "model.json")) as f:
        manifest = json.load(f)["weightsManifest"]
    return [w["name"] for group in manifest for w in group["weights"]
            if w["dtype"] == "float32" and int(np.prod(w["shape"])) >= min_values]


def tfjs_script_path() -> str:
    """`tf.min.js` of the npm package `@tensorflow/tfjs` (installed by `npm ci` at the repo root).

    Raises:
        ValueError: when it is not there.
    """
    path = os.path.join(REPO_ROOT, "node_modules", "@tensorflow", "tfjs", "dist", "tf.min.js")
    if not os.path.exists(path):
        raise ValueError(f"TF.js is not installed: {path!r} does not exist. Run `npm ci` in {REPO_ROOT} "
                         "(it installs @tensorflow/tfjs from package-lock.json).")
    return path


def build_web(web_dir: str, tfjs_dir: str) -> str:
    """Writes the offline page: index.html, app.js, style.css, tf.min.js and the model in `model/`."""
    script = tfjs_script_path()

    def build(tmp):
        for name in WEB_FILES:
            shutil.copy(os.path.join(WEB_SOURCE, name), tmp)
        shutil.copy(script, tmp)
        shutil.copytree(tfjs_dir, os.path.join(tmp, "model"))

    _replace_dir(build, web_dir)
    return web_dir


def tfjs_predict(model_dir: str, images) -> tuple[np.ndarray, float]:
    """Runs a TF.js graph model in Node (pure-JS CPU backend), one photo at a time.

    Args:
        model_dir: a folder with `model.json`.
        images: float32 arrays (H, W, 3), 0..255; sizes may differ.

    Returns:
        (probabilities (N, C), milliseconds per photo).

    Raises:
        ValueError: when Node or TF.js is missing, or the script fails.
    """
    node = shutil.which("node")
    if node is None:
        raise ValueError("Node.js (`node`) is not on PATH. Expected Node >= 18 to run the TF.js model.")
    tfjs_script_path()
    with tempfile.TemporaryDirectory() as tmp:
        pixels, shapes, out = (os.path.join(tmp, n) for n in ("pixels.bin", "shapes.json", "out.json"))
        with open(pixels, "wb") as f:
            for image in images:
                f.write(np.ascontiguousarray(image, np.float32).tobytes())
        with open(shapes, "w") as f:
            json.dump([list(np.shape(image)[:2]) for image in images], f)
        result = subprocess.run([node, NODE_PREDICT, os.path.abspath(model_dir), pixels, shapes, out],
                                capture_output=True, text=True, cwd=REPO_ROOT)
        if result.returncode != 0:
            raise ValueError(f"TF.js prediction in Node failed for model {model_dir!r}:\n{result.stderr[-2000:]}")
        with open(out) as f:
            answer = json.load(f)
    return np.asarray(answer["probabilities"], np.float32), float(answer["ms_per_image"])


def decoded_test_photos(source, test_items, resize):
    """(photos (N, S, S, 3) float32 resized like the model does, labels (N,)) of `test_items`."""
    keys, labels = zip(*test_items)
    photos, out_labels = [], []
    for encoded, batch_labels in source.dataset(list(keys), list(labels)).batch(64):
        photos.append(decode_batch(encoded, resize).numpy())
        out_labels.append(batch_labels.numpy())  # a TFDS source may reorder photos
    return np.concatenate(photos), np.concatenate(out_labels)


def dir_size(path: str) -> int:
    """Bytes of all files under `path`."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def export_all(model, class_names, export_dir: str, *, model_name: str = "dog_breeds", top_k: int = 5,
               test_items=None, source=None, provenance: dict | None = None) -> dict:
    """SavedModel (new version), TF.js float32 and float16, and the web page, under `export_dir`.

    With `test_items` ([[key, class index], ...]) and their `source`, both TF.js
    models are run on those photos in Node to measure what float16 weights cost.
    `provenance` (e.g. the run directory and the model file) is stored in export.json.

    Returns:
        A dict of paths, sizes in bytes and test accuracies; also written to
        `export_dir/export.json`.

    Raises:
        ValueError: when TF.js (`npm ci`) or Node is missing; checked before anything is written.
    """
    tfjs_script_path()
    if test_items and source is None:
        raise ValueError("`test_items` were given without their `source`. Expected the data source "
                         "(`ssl_keras.data.open_source(...)`) that reads their keys.")
    if test_items and shutil.which("node") is None:
        raise ValueError("Node.js (`node`) is not on PATH. Expected Node >= 18 to measure the TF.js models.")
    start = time.time()
    resize = find_resizing(model)
    base_path = os.path.join(export_dir, "saved_model", model_name)
    remove_leftovers(export_dir, os.path.dirname(base_path))
    staged = export_saved_model(model, class_names, base_path, top_k, publish=False)
    try:
        metadata = {"classes": list(class_names), "image_size": int(resize.height), "top_k": int(top_k),
                    "model_name": model_name, "version": next_version(base_path)}
        tfjs32 = export_tfjs(staged, os.path.join(export_dir, "tfjs"), metadata)
        tfjs16 = export_tfjs(staged, os.path.join(export_dir, "tfjs_float16"), metadata, float16=True)
        web = build_web(os.path.join(export_dir, "web"), tfjs32)
        version_dir = publish_version(staged, base_path)  # last: a server sees the new version only now
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    info = {
        "model_name": model_name, "version": int(os.path.basename(version_dir)), "classes": list(class_names),
        **({"source": provenance} if provenance else {}),
        "paths": {"saved_model": version_dir, "tfjs": tfjs32, "tfjs_float16": tfjs16, "web": web},
        "bytes": {"saved_model": dir_size(version_dir), "tfjs": dir_size(tfjs32),
                  "tfjs_float16": dir_size(tfjs16), "web": dir_size(web)},
    }
    if test_items:
        photos, labels = decoded_test_photos(source, test_items, resize)
        keras_probs = np.asarray(model.predict(photos, batch_size=64, verbose=0), np.float32)
        p32, _ = tfjs_predict(tfjs32, photos)
        p16, _ = tfjs_predict(tfjs16, photos)
        acc = {name: float(np.mean(p.argmax(1) == labels)) for name, p in
               (("keras", keras_probs), ("tfjs", p32), ("tfjs_float16", p16))}
        info["test"] = {
            "photos": len(labels), "accuracy": acc,
            "float16_accuracy_change": acc["tfjs_float16"] - acc["tfjs"],
            "float16_max_abs_probability_change": float(np.abs(p16 - p32).max()),
            "float16_top1_agreement": float(np.mean(p16.argmax(1) == p32.argmax(1))),
            "tfjs_max_abs_probability_difference_from_keras": float(np.abs(p32 - keras_probs).max()),
        }
    info["wall_time_s"] = round(time.time() - start, 1)
    files.write_json(os.path.join(export_dir, "export.json"), info)
    _print_summary(info)
    return info


def _print_summary(info: dict) -> None:
    b = info["bytes"]
    print(f"[export] SavedModel {info['paths']['saved_model']} ({b['saved_model'] / 1e6:.2f} MB); "
          f"TF.js {b['tfjs'] / 1e6:.2f} MB, float16 {b['tfjs_float16'] / 1e6:.2f} MB; page {info['paths']['web']}")
    if "test" in info:
        t = info["test"]
        print(f"[export] test accuracy on {t['photos']} photos: Keras {t['accuracy']['keras']:.4f}, "
              f"TF.js {t['accuracy']['tfjs']:.4f}, TF.js float16 {t['accuracy']['tfjs_float16']:.4f} "
              f"(change {t['float16_accuracy_change']:+.4f}; max probability change "
              f"{t['float16_max_abs_probability_change']:.1e})")
