"""The TF Serving-compatible REST endpoint: JSON shapes, agreement with Keras, and every 4xx path."""

import base64
import concurrent.futures
import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request

import pytest

from serving_helpers import MIN_PHOTOS, assert_same_predictions, decode, exported, keras_probabilities

LIMIT = 4 * 2**20  # the body-size limit of the server under test


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return exported(tmp_path_factory)


@pytest.fixture(scope="module")
def url(model):
    """A real server (uvicorn) on a free loopback port, for this module."""
    import uvicorn

    from ssl_keras import serve

    app = serve.create_app(model["base_path"], "dog_breeds", max_body_bytes=LIMIT, poll_seconds=0)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/v1/models"
    server.should_exit = True
    thread.join(10)


def call(url, body=None, method=None, raw=None):
    """(status, JSON answer) of a request; `body` is sent as JSON, `raw` as is."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        assert "Traceback" not in text
        return e.code, json.loads(text)


def b64(path):
    with open(path, "rb") as f:
        return {"b64": base64.b64encode(f.read()).decode()}


@pytest.mark.slow
def test_status_and_metadata(url):
    status, answer = call(f"{url}/dog_breeds")
    assert status == 200
    assert answer == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert call(f"{url}/dog_breeds/versions/1")[1] == answer
    status, meta = call(f"{url}/dog_breeds/metadata")
    assert status == 200
    assert meta["model_spec"] == {"name": "dog_breeds", "signature_name": "", "version": "1"}
    sigs = meta["metadata"]["signature_def"]["signature_def"]
    default = sigs["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert default["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert default["inputs"]["image_bytes"]["tensor_shape"] == {"dim": [{"size": "-1"}]}
    assert set(default["outputs"]) == {"probabilities", "top_k_classes", "top_k_probabilities"}
    assert sigs["predict_pixels"]["inputs"]["pixels"]["dtype"] == "DT_FLOAT"
    assert call(f"{url}/dog_breeds/versions/1/metadata")[1] == meta


@pytest.mark.slow
def test_row_format_b64_matches_keras_on_real_photos(url, model):
    photos, classes = model["photos"], model["classes"]
    assert len(photos) >= MIN_PHOTOS
    predictions = []
    for i in range(0, len(photos), 10):
        status, answer = call(f"{url}/dog_breeds:predict", {"instances": [b64(p) for p in photos[i:i + 10]]})
        assert status == 200, answer
        predictions += answer["predictions"]
    reference = keras_probabilities(model)
    assert_same_predictions(reference, [p["probabilities"] for p in predictions], "REST, row format")
    assert [p["top_k_classes"][0] for p in predictions] == [classes[i] for i in reference.argmax(1)]
    assert all(len(p["top_k_classes"]) == len(classes) == len(p["top_k_probabilities"]) for p in predictions)


@pytest.mark.slow
def test_column_format_named_and_versioned(url, model):
    photos = model["photos"][:4]
    reference = keras_probabilities(model)[:4]
    status, answer = call(f"{url}/dog_breeds/versions/1:predict",
                          {"signature_name": "serving_default", "inputs": {"image_bytes": [b64(p) for p in photos]}})
    assert status == 200, answer
    assert set(answer) == {"outputs"}
    assert_same_predictions(reference, answer["outputs"]["probabilities"], "REST, column format")
    status, rows = call(f"{url}/dog_breeds:predict", {"instances": [{"image_bytes": b64(p)} for p in photos]})
    assert status == 200
    assert_same_predictions(reference, [r["probabilities"] for r in rows["predictions"]], "REST, named rows")


@pytest.mark.slow
def test_pixel_signature_over_rest(url, model):
    photos = model["photos"][:2]
    reference = keras_probabilities(model)[:2]
    for i, path in enumerate(photos):  # photos differ in size: one request each
        pixels = decode(path)
        status, answer = call(f"{url}/dog_breeds:predict",
                              {"signature_name": "predict_pixels", "instances": [pixels.tolist()]})
        assert status == 200, answer
        assert_same_predictions(reference[i:i + 1], [answer["predictions"][0]["probabilities"]], "REST pixels")


@pytest.mark.slow
def test_concurrent_clients_get_their_own_answers(url, model):
    photos = model["photos"][:8]
    reference = keras_probabilities(model)[:8]

    def one(i):
        return call(f"{url}/dog_breeds:predict", {"instances": [b64(photos[i])]})[1]["predictions"][0]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(one, range(len(photos))))
    assert_same_predictions(reference, [a["probabilities"] for a in answers], "concurrent REST")


@pytest.mark.slow
@pytest.mark.parametrize("path, body, raw, status, words", [
    ("dog_breeds:predict", None, b'{"instances": [', 400, "Malformed JSON"),
    ("dog_breeds:predict", None, b"\xff\xfe", 400, "Malformed JSON"),
    ("dog_breeds:predict", [1, 2], None, 400, "must be a JSON object"),
    ("dog_breeds:predict", {"instances": [{"b64": "aGk="}], "inputs": []}, None, 400, "exactly one of"),
    ("dog_breeds:predict", {"instances": []}, None, 400, "non-empty list"),
    ("dog_breeds:predict", {"instances": [{"b64": "bm90IGEgcGhvdG8="}]}, None, 400, "Unknown image file format"),
    ("dog_breeds:predict", {"instances": [{"b64": "***"}]}, None, 400, "invalid base64"),
    ("dog_breeds:predict", {"instances": [3.5]}, None, 400, "cannot be read as a string tensor"),
    ("dog_breeds:predict", {"instances": [{"photo": {"b64": "aGk="}}]}, None, 400, "expected ['image_bytes']"),
    ("dog_breeds:predict", {"inputs": {"image_bytes": [[{"b64": "aGk="}]]}}, None, 400, "has shape (1, 1)"),
    ("dog_breeds:predict", {"signature_name": "predict_pixels", "instances": [[[1, 2, 3]]]}, None, 400,
     "has shape (1, 1, 3); expected shape (-1, -1, -1, 3)"),
    ("dog_breeds:predict", {"signature_name": "predict_pixels", "instances": [[[[1, 2]]]]}, None, 400,
     "has shape (1, 1, 1, 2)"),
    ("dog_breeds:predict", {"signature_name": "predict_pixels", "instances": [[[[1, 2, 3]], [[1, 2]]]]}, None,
     400, "rectangular"),
    ("dog_breeds:predict", {"signature_name": "predict_pixels", "instances": [[[["a", 2, 3]]]]}, None, 400,
     "float32"),
    ("dog_breeds:predict", {"instances": [{"b64": "aGk="}, {"image_bytes": {"b64": "aGk="}}]}, None, 400,
     "unexpected object with keys ['image_bytes']"),
    ("dog_breeds:predict", {"signature_name": "nope", "instances": [{"b64": "aGk="}]}, None, 400,
     "\"nope\" not found"),
    ("cats:predict", {"instances": [{"b64": "aGk="}]}, None, 404, "Servable not found for request: Latest(cats)"),
    ("cats", None, None, 404, "Latest(cats)"),
    ("dog_breeds/versions/7:predict", {"instances": [{"b64": "aGk="}]}, None, 404, "Specific(dog_breeds, 7)"),
    ("dog_breeds/versions/7/metadata", None, None, 404, "Specific(dog_breeds, 7)"),
    ("dog_breeds/versions/x", None, None, 400, "must be an integer"),
    ("dog_breeds:classify", {"examples": []}, None, 400, "not supported"),
    ("dog_breeds/oops", None, None, 404, "Malformed request"),
])
def test_bad_requests_get_4xx_and_an_error(url, path, body, raw, status, words):
    got, answer = call(f"{url}/{path}", body, raw=raw)
    assert got == status, answer
    assert set(answer) == {"error"} and words in answer["error"], answer


@pytest.mark.slow
def test_body_too_big_is_413(url):
    body = json.dumps({"instances": [{"b64": "A" * LIMIT}]}).encode()
    status, answer = call(f"{url}/dog_breeds:predict", raw=body)
    assert status == 413 and "limit" in answer["error"]
    status, answer = call(f"{url}/dog_breeds:predict", {"instances": [{"b64": "A" * (LIMIT - 100)}]})
    assert status == 400 and "Unknown image file format" in answer["error"]  # under the limit: read
    # The same without a Content-Length header (chunked): counted while it streams in.
    import http.client

    host, port = url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("POST", "/v1/models/dog_breeds:predict", body=iter([body[:LIMIT // 2], body[LIMIT // 2:]]),
                 encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 413 and "error" in json.loads(response.read())
    conn.close()


@pytest.mark.slow
def test_wrong_method_and_unknown_route(url):
    got, answer = call(f"{url}/dog_breeds:predict")  # GET
    assert got == 405 and "POST" in answer["error"]
    got, answer = call(f"{url}/dog_breeds", method="DELETE")
    assert got == 405 and "error" in answer
    got, answer = call(url.replace("/v1/models", "/v2/nothing"))
    assert got == 404 and "error" in answer


@pytest.mark.slow
def test_an_internal_error_is_a_500_without_a_traceback(url, monkeypatch):
    from ssl_keras import serve

    def broken(servable, body):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(serve, "predict", broken)
    status, answer = call(f"{url}/dog_breeds:predict", {"instances": [{"b64": "aGk="}]})
    assert status == 500
    assert answer == {"error": "Internal error (RuntimeError); see the server log."}


@pytest.mark.slow
def test_a_newer_version_is_picked_up(model, tmp_path):
    from ssl_keras import serve

    base = tmp_path / "dog_breeds"
    shutil.copytree(model["base_path"], base)
    app = serve.create_app(str(base), "dog_breeds", poll_seconds=0)
    store = app.state.store
    assert sorted(store.servables) == [1]
    shutil.copytree(base / "1", tmp_path / "tmp-version")
    os.rename(tmp_path / "tmp-version", base / "2")
    store.refresh()
    assert sorted(store.servables) == [2] and store.get("dog_breeds", None).version == 2
    with pytest.raises(serve.RequestError, match="Specific"):
        store.get("dog_breeds", "1")


def test_server_refuses_a_missing_model(tmp_path):
    from ssl_keras import serve

    with pytest.raises(ValueError, match="is not a folder"):
        serve.ModelStore(str(tmp_path / "nothing"), "dog_breeds")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No version folder"):
        serve.ModelStore(str(tmp_path / "empty"), "dog_breeds")
    assert serve.main(["--model-base-path", str(tmp_path / "empty")]) == 2


def test_binds_to_loopback_by_default():
    from ssl_keras import serve

    args = serve.build_parser().parse_args([])
    assert (args.host, args.port, args.model_name) == ("127.0.0.1", 8501, "dog_breeds")
    assert args.max_body_bytes == serve.MAX_BODY_BYTES
