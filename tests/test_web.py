"""The offline page in headless Chromium (Playwright): real photos in, the same breeds as Keras out.

Chromium is Debian's /usr/bin/chromium (or $CHROMIUM); Playwright's own browser download is not used.

The page decodes with the browser (libjpeg's accurate integer IDCT for JPEG), the SavedModel and
Keras with `ssl_keras.preprocessing.decode`, which uses the same IDCT: the same file gives the same
probabilities everywhere, to 1e-4.
"""

import functools
import http.server
import os
import threading

import numpy as np
import pytest

from serving_helpers import MIN_PHOTOS, assert_same_predictions, decode, exported

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return exported(tmp_path_factory)


@pytest.fixture(scope="module")
def site(model):
    """export/web served on a free loopback port (the page fetches its model, so file:// will not do)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=os.path.join(model["export_dir"], "web"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the PyPI package `playwright` is not installed")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"Chromium is not at {CHROMIUM} (apt-get install chromium, or set $CHROMIUM)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Page:
    """The page in a fresh tab; records console errors, page errors and every URL it requests."""

    def __init__(self, browser, url):
        self.page = browser.new_page()
        self.errors, self.requests = [], []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(url)
        self.wait()
        assert self.state() == "ready", self.page.inner_text("#message")

    def state(self):
        return self.page.evaluate("document.body.dataset.state")

    def wait(self, states=("ready", "done", "error")):
        self.page.wait_for_function(f"{list(states)}.includes(document.body.dataset.state)", timeout=60_000)

    def upload(self, files):
        """Picks `files` with the file input; returns [(breed, probability), ...] as shown, best first."""
        self.page.evaluate("document.body.dataset.state = 'test-waiting'")
        self.page.set_input_files("input[type=file]", files)
        self.wait(("done", "error"))
        return self.shown()

    def shown(self):
        return [(b, float(p)) for b, p in self.page.eval_on_selector_all(
            "#predictions > *", "els => els.map(e => [e.dataset.breed, e.dataset.probability])")]


def as_matrix(shown, classes):
    """Probabilities (C,) from the rows shown (all of them when C <= 5)."""
    assert len(shown) == min(5, len(classes))
    probs = [p for _, p in shown]
    assert probs == sorted(probs, reverse=True), "not best first"
    row = np.full(len(classes), np.nan)
    for breed, p in shown:
        row[classes.index(breed)] = p
    return row


@pytest.fixture(scope="module")
def reference(model):
    """(N, C) Keras probabilities on the test photos, decoded by the project's one decoder."""
    import keras

    keras_model = keras.models.load_model(model["keras_path"])
    return np.concatenate([np.asarray(keras_model(decode(p)[None], training=False))
                           for p in model["photos"]])


def test_page_matches_keras_on_real_photos(browser, site, model, reference):
    classes, photos = model["classes"], model["photos"]
    page = Page(browser, site + "?backend=cpu")
    assert len(photos) >= MIN_PHOTOS
    shown = np.stack([as_matrix(page.upload(p), classes) for p in photos])
    assert_same_predictions(reference, shown, "TF.js in Chromium (cpu backend)")
    assert not page.errors, page.errors
    assert all(u.startswith(site) or u.startswith(("blob:", "data:")) for u in page.requests), page.requests


def test_page_with_the_default_backend(browser, site, model, reference, tmp_path):
    classes = model["classes"]
    page = Page(browser, site)
    shown = np.stack([as_matrix(page.upload(p), classes) for p in model["photos"][:10]])
    assert_same_predictions(reference[:10], shown, f"TF.js in Chromium ({page.page.inner_text('#about')})")
    assert "Prediction took" in page.page.inner_text("#timing")
    assert page.page.is_visible("#preview") and page.page.is_visible("#predictions")
    screenshot = tmp_path / "web_screenshot.png"
    page.page.set_viewport_size({"width": 900, "height": 700})
    page.page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    print(f"\nScreenshot of the page with a prediction: {screenshot}")
    assert not page.errors, page.errors


def test_drop_and_paste(browser, site, model, reference):
    classes = model["classes"]
    page = Page(browser, site + "?backend=cpu")
    with open(model["photos"][0], "rb") as f:
        data = list(f.read())
    for event, target in (("drop", "#dropzone"), ("paste", "body")):
        page.page.evaluate("document.body.dataset.state = 'test-waiting'")
        page.page.evaluate("""([event, target, bytes]) => {
            const dt = new DataTransfer();
            dt.items.add(new File([new Uint8Array(bytes)], 'dog.jpg', {type: 'image/jpeg'}));
            const e = event === 'drop'
                ? new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true})
                : new ClipboardEvent('paste', {clipboardData: dt, bubbles: true, cancelable: true});
            document.querySelector(target).dispatchEvent(e);
        }""", [event, target, data])
        page.wait(("done", "error"))
        assert_same_predictions(reference[:1], as_matrix(page.shown(), classes)[None], event)
    assert not page.errors, page.errors


def test_a_file_that_is_not_an_image_gets_a_message(browser, site, model, tmp_path):
    page = Page(browser, site + "?backend=cpu")
    assert page.upload(model["photos"][0])  # a prediction first: the message must replace it
    notes = tmp_path / "notes.txt"
    notes.write_text("Not a photo of a dog.\n")
    fake = tmp_path / "fake.jpg"
    fake.write_bytes(b"\xff\xd8 this is not really a JPEG")
    for path, words in ((notes, "is not an image (it is text/plain)"), (fake, "this browser cannot decode it")):
        assert page.upload(str(path)) == []
        assert page.state() == "error"
        assert page.page.is_visible("#message")
        text = page.page.inner_text("#message")
        assert path.name in text and words in text, text
        assert not page.page.is_visible("#result")
    assert page.upload(model["photos"][1])  # and the page still works
    assert not page.page.is_visible("#message")
    assert not page.errors, page.errors


def test_page_savedmodel_rest_and_predict_give_the_same_probabilities_on_the_same_files(browser, site, model):
    """One decode and one resize everywhere: on >= 50 real photo files, the page in Chromium (which decodes
    the file itself), the SavedModel's `serving_default` (JPEG bytes), the REST endpoint (the same bytes as
    base64) and `predict` (`experiment.photo_probabilities`) agree to 1e-4."""
    import base64
    import json
    import urllib.request

    import tensorflow as tf

    from serving_helpers import rest_server
    from ssl_keras import experiment, models

    classes, photos = model["classes"], model["photos"]
    assert len(photos) >= MIN_PHOTOS
    page = Page(browser, site + "?backend=cpu")
    in_page = np.stack([as_matrix(page.upload(p), classes) for p in photos])
    raw = [open(p, "rb").read() for p in photos]
    loaded = tf.saved_model.load(os.path.join(model["base_path"], "1"))
    saved = loaded.signatures["serving_default"](image_bytes=tf.constant(raw))["probabilities"].numpy()
    with rest_server(model["base_path"]) as url:
        body = json.dumps({"instances": [{"b64": base64.b64encode(r).decode()} for r in raw]}).encode()
        with urllib.request.urlopen(urllib.request.Request(f"{url}/dog_breeds:predict", data=body)) as answer:
            rest = np.array([row["probabilities"] for row in json.load(answer)["predictions"]])
    keras_model = models.load(model["keras_path"])
    predicted = np.stack([experiment.photo_probabilities(keras_model, p) for p in photos])
    for what, probs in (("the SavedModel", saved), ("the REST endpoint", rest), ("predict", predicted)):
        assert_same_predictions(in_page, probs, f"{what} against the page in Chromium")
    assert not page.errors, page.errors
