"""The TF Serving-compatible REST endpoint: JSON shapes, agreement with Keras, every 4xx path, the limits
(JSON depth, values, numbers that do not fit, odd paths), HEAD, and the header and body deadlines."""

import base64
import concurrent.futures
import http.client
import json
import os
import shutil
import socket
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from serving_helpers import MIN_PHOTOS, assert_same_predictions, decode, exported, keras_probabilities, rest_server

LIMIT = 4 * 2**20  # the body-size limit of the server under test
HEADER_SECONDS, BODY_SECONDS = 1.0, 1.5  # its read deadlines: short, so that the slow-client tests are quick


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return exported(tmp_path_factory)


@pytest.fixture(scope="module")
def url(model):
    """A real server (uvicorn) on a free loopback port, for this module."""
    with rest_server(model["base_path"], max_body_bytes=LIMIT, header_seconds=HEADER_SECONDS,
                     body_seconds=BODY_SECONDS) as url:
        yield url


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
    from serving_fuzz import png_declaring as png
    for sizes, words in (([(100_000, 100_000)], "item 0 declare 10,000,000,000 pixels; the limit is 50,000,000"),
                         ([(5000, 5000)] * 3, "item 2 declare 75,000,000 pixels"),
                         ([(7000, 7000)] * 2, "item 1 declare 98,000,000 pixels"),
                         ([(5000, 5000)] * 2, "Cannot run signature")):  # at the limit: the decoder has its say
        body = {"instances": [{"b64": base64.b64encode(png(w, h)).decode()} for w, h in sizes]}
        status, answer = call(f"{url}/dog_breeds:predict", body)
        assert status == 400 and words in answer["error"], answer


def _drip(url, first: bytes, rest: bytes, every: float):
    """Sends `first`, then `rest` a byte every `every` seconds; (answer, bytes of `rest` sent, seconds)."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    start = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(first)
        s.settimeout(every)
        answer, sent = b"", 0
        for byte in rest:
            try:
                s.send(bytes([byte]))
                sent += 1
                chunk = s.recv(65536)
                answer += chunk
                if not chunk:
                    break
            except socket.timeout:
                continue
            except OSError:  # closed by the server
                break
        s.settimeout(30)
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except OSError:
            pass
    return answer, sent, time.monotonic() - start


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["headers", "body", "idle"])
def test_a_slow_client_is_cut_off_with_408(url, phase):
    """Slowloris: headers or body sent a byte at a time, or nothing sent at all. The deadline is fixed when
    the phase starts, so the trickle does not extend it; the connection is answered 408 and closed long before
    the client would have finished (100 bytes at 0.1 s: 10 s)."""
    head = b"POST /v1/models/dog_breeds:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    first, rest = {"headers": (b"", head), "body": (head, b"x" * 100), "idle": (b"", b"")}[phase]
    if phase == "idle":
        host, port = url.split("//")[1].split("/")[0].split(":")
        with socket.create_connection((host, int(port)), timeout=30) as s:
            answer = s.recv(65536)
        sent = 0
    else:
        answer, sent, _ = _drip(url, first, rest, 0.1)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    late = "body" if phase == "body" else "headers"
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"].startswith(f"Request {late} not received within")
    assert sent < len(rest) or phase == "idle"
    status, _ = call(f"{url}/dog_breeds")  # others are served meanwhile and after
    assert status == 200


@pytest.mark.slow
def test_the_next_request_on_a_kept_alive_connection_has_a_header_deadline_too(url):
    """A first request answered, then the next one's headers trickle in: 200, then 408 and the connection closed."""
    first = b"GET /v1/models/dog_breeds HTTP/1.1\r\nHost: x\r\n\r\n"
    answer, sent, _ = _drip(url, first, b"GET /v1/models/dog_breeds HTTP/1.1\r\nHost: x\r\n\r\n" * 3, 0.1)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1 ") == 2, answer
    assert b"HTTP/1.1 408 " in answer and b"Request headers not received" in answer
    assert sent < 3 * len(first)


@pytest.mark.slow
def test_a_kept_alive_connection_gets_a_fresh_header_deadline_per_request(url):
    """Requests on one connection, each sent quickly, over longer than the header deadline: all answered."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    for _ in range(4):
        conn.request("GET", "/v1/models/dog_breeds")
        response = conn.getresponse()
        assert response.status == 200
        response.read()
        time.sleep(HEADER_SECONDS / 2)
    conn.close()


@pytest.mark.slow
def test_an_internal_error_is_a_500_without_a_traceback(url, monkeypatch):
    from ssl_keras import serve

    def broken(*args):
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
    assert (args.host, args.port, args.rest_api_port, args.model_name) == ("127.0.0.1", 8500, 8501, "dog_breeds")
    assert args.max_body_bytes == serve.LIMITS.max_body_bytes
    assert (args.header_timeout_seconds, args.rest_api_timeout_in_ms) == (10, 30_000)


def test_takes_tf_serving_flags_and_the_hyphenated_aliases():
    """TF Serving's meaning wins: --port is gRPC; --rest_api_port is REST; underscores and hyphens both work."""
    from ssl_keras import serve

    tf_serving = serve.build_parser().parse_args(["--port=9000", "--rest_api_port=9001", "--model_name=cats",
                                                  "--model_base_path=/m", "--rest_api_timeout_in_ms=500",
                                                  "--file_system_poll_wait_seconds=5"])
    hyphens = serve.build_parser().parse_args(["--port", "9000", "--rest-api-port", "9001", "--model-name", "cats",
                                               "--model-base-path", "/m", "--rest_api_timeout_in_ms", "500",
                                               "--poll-seconds", "5"])
    assert vars(tf_serving) == vars(hyphens)
    assert (tf_serving.port, tf_serving.rest_api_port, tf_serving.model_base_path) == (9000, 9001, "/m")
    with pytest.raises(SystemExit):
        serve.build_parser().parse_args(["--rest", "9001"])  # no abbreviations: TF Serving has none


@pytest.mark.parametrize("flags, words", [
    (["--port", "0", "--rest_api_port", "0"], "nothing to serve"),
    (["--port", "8501", "--rest_api_port", "8501"], "Expected two ports"),
    (["--port", "70000"], "--port must be 0..65535"),
    (["--max-values", "0"], "--max-values must be > 0"),
    (["--rest_api_timeout_in_ms", "-1"], "--rest_api_timeout_in_ms must be > 0"),
])
def test_refuses_bad_flags(flags, words, capsys, tmp_path):
    from ssl_keras import serve

    assert serve.main(flags + ["--model_base_path", str(tmp_path)]) == 2
    assert words in capsys.readouterr().err


def test_json_depth_and_value_count_are_refused_before_parsing():
    """Deep nesting got a 500 (RecursionError) before; now a 400 naming the depth, from a byte scan."""
    from ssl_keras import serve

    for deep in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000, b"[" * 33):
        with pytest.raises(serve.RequestError, match="nests arrays and objects") as e:
            serve.parse_json(deep)
        assert e.value.status == 400
    assert serve.parse_json(b'{"a": "' + b"[" * 40 + b'"}') == {"a": "[" * 40}  # inside a string: not nesting
    limits = serve.Limits(max_values=100)
    assert serve.parse_json(json.dumps({"instances": [0] * 90}).encode(), limits)["instances"] == [0] * 90
    with pytest.raises(serve.RequestError, match="holds about 113 JSON values; the limit is 100"):
        serve.parse_json(json.dumps({"instances": [0] * 110}).encode(), limits)
    for junk in (b"1" * 5000, b'{"a": ' + b"1" * 5000 + b"}", b"\xff", b"[1, 2"):  # 4300-digit ints: a ValueError
        with pytest.raises(serve.RequestError, match="Malformed JSON"):
            serve.parse_json(junk)


def test_long_arrays_of_numbers_are_read_by_numpy_like_json():
    """Arrays past NUMERIC_ARRAY_BYTES skip Python lists; they read as json.loads would, or are refused.

    Seeded mutations (a byte inserted or deleted) of random arrays, read in 7-byte pieces so that every
    piece boundary is crossed: numpy's reading and json's agree on every one, or both refuse it.
    """
    import random

    from ssl_keras import serve, serve_json

    rng, old_piece = random.Random(0), serve_json.PIECE
    serve_json.PIECE = 7
    try:
        for _ in range(2000):
            shape = (rng.randint(1, 3), rng.randint(1, 4), 3)
            array = np.asarray([rng.randint(-500, 500) / rng.choice([1, 4, 1000]) for _ in range(int(np.prod(shape)))])
            text = json.dumps(array.reshape(shape).tolist(), indent=rng.choice([None, 1])).encode()
            assert np.array_equal(serve_json.read_numbers(text), array.reshape(shape))
            mutated = bytearray(text)
            at = rng.randrange(len(mutated))
            if rng.random() < 0.5:
                mutated[at:at] = rng.choice([b",", b"]", b"[", b" ", b"0", b"-", b".", b"e", b"+"])
            else:
                del mutated[at]
            try:
                expected = np.asarray(json.loads(bytes(mutated)), float)
                expected = expected if expected.size else None  # empty lists: refused on purpose
            except ValueError:
                expected = None
            try:
                got = serve_json.read_numbers(bytes(mutated))
            except ValueError:
                got = None
            assert (got is None) == (expected is None), (bytes(mutated), expected, got)
            assert got is None or np.array_equal(got, expected)
    finally:
        serve_json.PIECE = old_piece
    body = {"signature_name": "predict_pixels", "instances": (np.arange(2 * 40 * 40 * 3) % 256).reshape(2, 40, 40, 3)
            .astype(float).tolist(), "note": "[1, 2, 3]"}
    raw = json.dumps(body).encode()
    assert len(raw) > serve_json.NUMERIC_ARRAY_BYTES
    parsed = serve.parse_json(raw)
    assert isinstance(parsed["instances"], np.ndarray) and parsed["instances"].shape == (2, 40, 40, 3)
    assert parsed["note"] == "[1, 2, 3]" and np.array_equal(parsed["instances"], body["instances"])
    ragged = raw.replace(b"[0.0, 1.0, 2.0]", b"[0.0, 1.0]", 1)
    with pytest.raises(serve.RequestError, match="not a rectangular array of JSON numbers"):
        serve.parse_json(ragged)


def test_numbers_that_do_not_fit_the_dtype_are_refused():
    import tensorflow as tf

    from ssl_keras import serve

    ints = tf.TensorSpec([None], tf.int32)
    assert serve._to_array([1, -2], ints, "n").tolist() == [1, -2]
    assert serve._to_array(np.array([3.0, 4.0]), ints, "n").tolist() == [3, 4]  # read by numpy: whole numbers
    for value, words in (([2**40], "out of the range of int32"), ([10**30], "too large"), ([1.5], "whole numbers"),
                         (np.array([3e9]), "out of the range"), (["7"], "expected numbers, not strings"),
                         ([None], "cannot be read"), ([[1], [2, 3]], "rectangular")):
        with pytest.raises(serve.RequestError, match=words):
            serve._to_array(value, ints, "n")
    floats = tf.TensorSpec([None, 3], tf.float32)
    for value in ([[float("nan"), 1, 2]], [[float("inf"), 1, 2]], [[1e39, 1, 2]], [[10**40, 1, 2]],
                  np.array([[1e300, 1, 2]])):
        with pytest.raises(serve.RequestError, match="NaN or infinite"):
            serve._to_array(value, floats, "pixels")
    with pytest.raises(serve.RequestError, match="cannot be read"):
        serve._to_array([[10**400, 1, 2]], floats, "pixels")  # too large even for a float64
    with pytest.raises(serve.RequestError, match="expected numbers, not strings"):
        serve._to_array([["1", "2", "3"]], floats, "pixels")
    assert serve._to_array([[1, 2.5, 10**20]], floats, "pixels").dtype == np.float32
