"""`ssl_keras.serving.rest`: TF Serving's REST API served by uvicorn. JSON shapes, agreement with Keras, every
4xx path, the limits over HTTP (body size, JSON depth, numbers that do not fit, odd paths), HEAD, and a 500
without a traceback."""

import base64
import concurrent.futures
import http.client
import json

import pytest

from serving_fuzz import png_declaring
from serving_helpers import (MIN_PHOTOS, assert_same_predictions, call, decode, exported, keras_probabilities,
                             rest_server)

LIMIT = 4 * 2**20  # the body-size limit of the server under test


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return exported(tmp_path_factory)


@pytest.fixture(scope="module")
def url(model):
    """A real server (uvicorn) on a free loopback port, for this module."""
    with rest_server(model["base_path"], max_body_bytes=LIMIT) as url:
        yield url


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
@pytest.mark.parametrize("body, words", [
    (b'{"signature_name": "predict_pixels", "instances": [[[[1e400, 1, 2]]]]}', "NaN or infinite"),
    (b'{"signature_name": "predict_pixels", "instances": [[[[-1e400, 1, 2]]]]}', "NaN or infinite"),
    (b'{"signature_name": "predict_pixels", "instances": [[[[1e39, 1, 2]]]]}', "too large for float32"),
    (b'{"signature_name": "predict_pixels", "instances": [[[[NaN, 1, 2]]]]}', "NaN or infinite"),
    (b'{"signature_name": "predict_pixels", "instances": [[[[Infinity, 1, 2]]]]}', "NaN or infinite"),
    (b'{"signature_name": "predict_pixels", "inputs": [[[[-Infinity, 1, 2]]]]}', "NaN or infinite"),
    (b'{"signature_name": "predict_pixels", "instances": [[[[' + b"9" * 5000 + b', 1, 2]]]]}', "Malformed JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "nests arrays and objects 100000 deep"),
    (b'{"instances": ' + b"[" * 40 + b"]" * 40 + b"}", "nests arrays and objects 41 deep"),
    (b'{"signature_name": 7, "instances": []}', "\"signature_name\" must be a string"),
])
def test_deep_json_and_numbers_out_of_range_get_400(url, body, words):
    status, answer = call(f"{url}/dog_breeds:predict", raw=body)
    assert status == 400 and words in answer["error"], answer


@pytest.mark.slow
def test_non_finite_pixels_in_a_long_array_get_400(url):
    """A photo's worth of pixels is read by numpy; a NaN or an overflow anywhere in it is still refused."""
    pixels = json.dumps({"signature_name": "predict_pixels", "instances": [[[[7.0, 8.0, 9.0]] * 64] * 64]})
    assert call(f"{url}/dog_breeds:predict", raw=pixels.encode())[0] == 200
    for bad in ("1e400", "NaN", "-Infinity", "3.5e38"):
        status, answer = call(f"{url}/dog_breeds:predict", raw=pixels.replace("8.0", bad, 1).encode())
        assert status == 400 and "NaN or infinite" in answer["error"], (bad, answer)


@pytest.mark.slow
@pytest.mark.parametrize("version, status", [
    ("%C2%B2", {400}), ("%D9%A1", {400}), ("%EF%BC%91", {400}), ("01x", {400}), ("-1", {400}), ("+1", {400}),
    ("1.0", {400}), ("9" * 19, {400}), ("9" * 5000, {400}), ("%00", {400}), ("%ff%fe", {400}), ("", {404}),
    ("1/", {404}), ("1%2F2", {404}), ("18", {404}), ("1%0a", {400, 404}),  # 404 where a newline ends no path
])
def test_odd_version_paths_get_400_or_404(url, version, status):
    """A version is ASCII digits (str.isdigit() also takes '²' and '١', and int('²') was a 500)."""
    for suffix in ("", "/metadata", ":predict"):
        got, answer = call(f"{url}/dog_breeds/versions/{version}{suffix}", {"instances": [{"b64": "aGk="}]}
                           if suffix == ":predict" else None)
        assert got in status and set(answer) == {"error"}, (version, suffix, answer)
        assert len(answer["error"]) < 400  # a 5000-digit version is not echoed whole


@pytest.mark.slow
def test_version_labels_are_refused_as_tf_serving_does_without_labels(url):
    got, answer = call(f"{url}/dog_breeds/labels/stable")
    assert got == 400 and "Unrecognized servable version label: stable" in answer["error"]
    assert call(f"{url}/cats/labels/stable")[0] == 404


@pytest.mark.slow
@pytest.mark.parametrize("path", ["dog_breeds", "dog_breeds/versions/1", "dog_breeds/metadata", "cats",
                                  "dog_breeds/versions/7", "dog_breeds:predict", "dog_breeds/versions/%C2%B2"])
def test_head_is_get_without_a_body(url, path):
    host, port = url.split("//")[1].split("/")[0].split(":")
    answers = {}
    for method in ("GET", "HEAD"):
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request(method, f"/v1/models/{path}")
        response = conn.getresponse()
        answers[method] = (response.status, {k: v for k, v in response.getheaders() if k.lower() != "date"},
                           response.read())
        conn.close()
    (get_status, get_headers, get_body), (head_status, head_headers, head_body) = answers["GET"], answers["HEAD"]
    assert (head_status, head_headers) == (get_status, get_headers)
    assert head_body == b"" and len(get_body) == int(get_headers["content-length"]) > 0


@pytest.mark.slow
def test_photos_declaring_too_many_pixels_get_400(url):
    """A small file can declare gigapixels: refused from its header, before the model decodes it."""
    png = png_declaring
    for sizes, words in (([(100_000, 100_000)], "item 0 declare 10,000,000,000 pixels; the limit is 50,000,000"),
                         ([(5000, 5000)] * 3, "item 2 declare 75,000,000 pixels"),
                         ([(7000, 7000)] * 2, "item 1 declare 98,000,000 pixels"),
                         ([(5000, 5000)] * 2, "Cannot run signature")):  # at the limit: the decoder has its say
        body = {"instances": [{"b64": base64.b64encode(png(w, h)).decode()} for w, h in sizes]}
        status, answer = call(f"{url}/dog_breeds:predict", body)
        assert status == 400 and words in answer["error"], answer


@pytest.mark.slow
def test_an_internal_error_is_a_500_without_a_traceback(url, monkeypatch):
    from ssl_keras.serving import rest

    def broken(*args):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(rest, "predict", broken)
    status, answer = call(f"{url}/dog_breeds:predict", {"instances": [{"b64": "aGk="}]})
    assert status == 500
    assert answer == {"error": "Internal error (RuntimeError); see the server log."}
