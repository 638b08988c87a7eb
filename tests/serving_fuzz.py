"""Fuzz and load clients for `python -m ssl_keras.serve`, over REST and gRPC, on loopback.

`Server` runs the command in its own process (gRPC and REST on free ports, short read deadlines,
a 4 MiB body limit). The generators make seeded malformed requests of each protocol
(`rest_fuzz_cases`, `grpc_fuzz_cases`: the same requests for the same seed) and send them on new
connections (`run_rest_fuzz`, `run_grpc_fuzz`); `rest_load` and `grpc_load` run many clients at
once, mixing good requests, checked against the SavedModel called in this process, with bad ones.

tests/test_serving_cli_fuzz.py asserts behaviour with them (no 5xx, no INTERNAL or UNKNOWN, no wrong
answer); benchmarks/bench_serving_fuzz.py measures speed with them. Plain Python: no pytest here.
"""

from __future__ import annotations

import base64
import collections
import concurrent.futures
import http.client
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODEL = "dog_breeds"
TOLERANCE = 1e-6  # the server runs without oneDNN, this process with it: ~1e-7 apart on the same photo
SERVER_FLAGS = ("--header-timeout-seconds", "2", "--rest_api_timeout_in_ms", "2000", "--max-body-bytes",
                str(4 * 2**20), "--poll-seconds", "0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m ssl_keras.serve` in its own process, gRPC and REST on free loopback ports."""

    def __init__(self, base_path: str, flags=SERVER_FLAGS, timeout: float = 180):
        import grpc

        self.grpc_port, self.rest_port = free_port(), free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ssl_keras.serve", "--port", str(self.grpc_port), "--rest_api_port",
             str(self.rest_port), "--model_name", MODEL, "--model_base_path", base_path, *flags],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        deadline = time.time() + timeout
        while self.rest_status() != 200:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.proc.stderr.read()[-3000:]}")
            if time.time() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not answer within {timeout} s")
            time.sleep(0.3)
        grpc.channel_ready_future(grpc.insecure_channel(self.grpc_target)).result(timeout=30)

    def rest_status(self) -> int | None:
        """The status of GET /v1/models/<name>, or None when nothing answers."""
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.rest_port, timeout=5)
            conn.request("GET", f"/v1/models/{MODEL}")
            return conn.getresponse().status
        except OSError:
            return None

    def rss_mb(self) -> float:
        """The server's resident memory (VmRSS), MiB."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> str:
        """Stops the server; returns the end of its log (stderr)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.stderr.read()[-5000:]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------------------------------------------- REST


def http_request(method: str, path: str, body: bytes = b"", headers=(), content_length=True) -> bytes:
    """The bytes of one HTTP/1.1 request that asks the server to close the connection after answering."""
    lines = [f"{method} {path} HTTP/1.1".encode("latin-1"), b"Host: 127.0.0.1", b"Connection: close"]
    lines += [h if isinstance(h, bytes) else h.encode("latin-1") for h in headers]
    if content_length:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def send_raw(port: int, data: bytes, timeout: float = 20) -> int | None:
    """Sends `data` on a new connection and reads until the server closes it: the status, or None if no answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:  # the server answered (and closed) before reading it all
            pass
        answer = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    if not answer.startswith(b"HTTP/1.1 "):
        return None
    return int(answer[9:12])


def png_declaring(width: int, height: int) -> bytes:
    """A 60-byte PNG whose header declares `width` x `height` pixels (its pixel data is missing)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def _b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def rest_fuzz_cases(seed: int, n: int, photo: bytes) -> list[tuple[str, bytes]]:
    """`n` malformed (and a few good) REST requests, as (family, request bytes); the same for the same seed."""
    rng = random.Random(seed)
    predict = f"/v1/models/{MODEL}:predict"
    good = json.dumps({"instances": [_b64(photo)]}).encode()

    def post(body: bytes, headers=(), content_length=True) -> bytes:
        return http_request("POST", predict, body, headers, content_length)

    def pixels(size: int, value="1.0") -> str:
        row = ", ".join([f"[{value}, 1.0, 1.0]"] + ["[1.0, 1.0, 1.0]"] * (size - 1))
        return '{"signature_name": "predict_pixels", "instances": [[' + ", ".join([f"[{row}]"] * size) + "]]}"

    def random_json(depth=0):
        makers = [lambda: None, lambda: rng.random() < 0.5, lambda: rng.uniform(-1e6, 1e6),
                  lambda: rng.randrange(-2**70, 2**70),
                  lambda: "".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randrange(8))),
                  lambda: [random_json(depth + 1) for _ in range(rng.randrange(4))],
                  lambda: {f"k{i}": random_json(depth + 1) for i in range(rng.randrange(3))}]
        return rng.choice(makers if depth < 4 else makers[:5])()

    def wrong_types() -> bytes:
        return post(json.dumps(rng.choice([
            lambda: {"instances": random_json()}, lambda: {"inputs": random_json()}, random_json,
            lambda: {"instances": [random_json()], "signature_name": random_json()},
            lambda: {"signature_name": "predict_pixels", "instances": [[[random_json()]]]},
            lambda: {"instances": [{"b64": random_json()}]}, lambda: {"inputs": {"pixels": random_json()}},
            lambda: {"instances": [{"image_bytes": _b64(photo), "extra": random_json()}]}])()).encode())

    def deep_nesting() -> bytes:
        d = rng.randrange(33, 200_000)
        return post(rng.choice([b"[" * d + b"]" * d, b'{"a":' * d + b"1" + b"}" * d, b"[" * d,
                                b'{"instances": ' + b"[" * d + b"]" * d + b"}"]))

    def odd_path() -> bytes:
        junk = "".join(rng.choice(["%00", "%ff", "%2F", "%C0%AF", "%E2%80%AE", "%25", "%", "..", "/", ":", "~",
                                   "%F0%9F%90%95", "%0a", "%0d%0a", "%20"]) for _ in range(rng.randrange(1, 5)))
        version = rng.choice(["%C2%B2", "%D9%A1", "%EF%BC%91", "01x", "", "-1", "+1", "1e3", "0x1", "1.0", " 1",
                              "9" * rng.randrange(19, 400), junk])
        model = f"/v1/models/{MODEL}"
        path = rng.choice([f"{model}/versions/{version}", f"{model}/versions/{version}:predict",
                           f"{model}/labels/{junk}", f"/v1/models/{junk}", f"/v1/{junk}", f"{model}{junk}",
                           f"/v1/models/{'n' * rng.randrange(100, 9000)}", f"{model}/metadata{junk}", f"/{model}",
                           f"{model}?{junk}", f"{model}:{junk}", "/v1/models", "/v1/models/", "*", "/"])
        return http_request(rng.choice(["GET", "HEAD", "POST"]), path, good)

    def odd_method() -> bytes:
        method = rng.choice(["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "FOO", "get", "G\x01T",
                             "GET GET", "P@ST", "M" * 300])
        return http_request(method, rng.choice([f"/v1/models/{MODEL}", predict]), good)

    def huge_numbers() -> bytes:
        small = ["1e400", "-1e400", "1e39", "NaN", "Infinity", "-Infinity", "1" * 5000, str(10**30), "1e-400"]
        long = ["1e400", "1e39", "-1e39", "NaN", "1" * 400, "3.4e38", "1e300"]  # a long array: read by numpy
        return post((pixels(2, rng.choice(small)) if rng.random() < 0.5 else pixels(64, rng.choice(long))).encode())

    def content_length() -> bytes:
        chunked = ["Transfer-Encoding: chunked"]
        return rng.choice([
            lambda: post(good[:100], [f"Content-Length: {rng.randrange(101, 10**6)}"], False),  # body never ends
            lambda: post(good, [f"Content-Length: {rng.randrange(0, len(good))}"], False),  # extra bytes after it
            lambda: post(good, [rng.choice(["Content-Length: -1", "Content-Length: x", "Content-Length: 1e3",
                                            "Content-Length: 10, 11", "Content-Length: " + "9" * 23])], False),
            lambda: post(good, ["Content-Length: 5", "Content-Length: 7"], False),
            lambda: post(b"5\r\nhello\r\n0\r\n\r\n", chunked + ["Content-Length: 3"], False),
            lambda: post(rng.choice([b"zz\r\nhi\r\n0\r\n\r\n", b"5\r\nhi\r\n", b"-1\r\n\r\n",
                                     b"ffffffffffffffff\r\nx"]), chunked, False),
            lambda: post(b"x" * (9 * 2**20)),  # over the 4 MiB limit
            lambda: post(b"", [f"Content-Length: {64 * 2**20}", "Expect: 100-continue"], False),
        ])()

    def odd_headers() -> bytes:
        header = rng.choice([b"X-Big: " + b"a" * rng.randrange(17_000, 40_000), b"Host: [", b"Host: a b", b"NoColon",
                             b"X-Bin: \xff\xfe\x00", b": empty-name", b"X\x00Y: 1", b" Leading: space"])
        return http_request("GET", f"/v1/models/{MODEL}", b"",
                            [header] + [f"X-{i}: {i}" for i in range(rng.choice([0, 200]))])

    def http_version() -> bytes:
        return rng.choice([b"GET /v1/models/%s HTTP/2.0\r\n\r\n", b"GET /v1/models/%s\r\n\r\n",
                           b"GET /v1/models/%s HTTX/1.1\r\n\r\n", b"GET /v1/models/%s HTTP/1.0\r\n\r\n",
                           b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n%s"]) % MODEL.encode()

    def bad_image() -> bytes:
        data = rng.choice([lambda: b"", lambda: b"not a photo", lambda: photo[:rng.randrange(1, len(photo))],
                           lambda: png_declaring(100_000, 100_000), lambda: png_declaring(1, 1),
                           lambda: b"GIF89a" + rng.randbytes(30), lambda: b"BM" + rng.randbytes(60),
                           lambda: b"\xff\xd8\xff" + rng.randbytes(100)])()
        return post(json.dumps({"instances": [_b64(data)]}).encode())

    families = {
        "random bytes": lambda: rng.randbytes(rng.randrange(1, 3000)),
        "random body": lambda: post(rng.randbytes(rng.randrange(0, 3000))),
        "truncated JSON": lambda: post(good[:rng.randrange(1, len(good))]),
        "wrong types": wrong_types, "deep nesting": deep_nesting, "odd path": odd_path, "odd method": odd_method,
        "huge numbers": huge_numbers, "content length": content_length, "odd headers": odd_headers,
        "http version": http_version, "bad images": bad_image, "good": lambda: post(good),
    }
    names = sorted(families)
    picks = [names[i] if i < len(names) else rng.choice(names) for i in range(n)]
    return [(name, families[name]()) for name in picks]


def run_rest_fuzz(port: int, cases, workers: int = 8) -> dict:
    """Sends the cases (`workers` at a time); {"status": Counter of statuses (None: no answer), "latency": [s]}."""
    def one(case):
        start = time.perf_counter()
        status = send_raw(port, case[1])
        return case[0], status, time.perf_counter() - start

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(one, cases))
    return {"status": collections.Counter(s for _, s, _ in results), "latency": [t for _, _, t in results],
            "by_family": [(f, s) for f, s, _ in results]}


# ---------------------------------------------------------------------------------------------------- gRPC


def tensor_proto(dtype: int, dims=(), **fields):
    """A TensorProto of `dtype` (a DataType number) and `dims`, with `fields` set as given (bytes) or extended."""
    from tensorflow.core.framework import tensor_pb2

    t = tensor_pb2.TensorProto(dtype=dtype)
    for d in dims:
        t.tensor_shape.dim.add().size = d
    for key, value in fields.items():
        if isinstance(value, bytes):
            setattr(t, key, value)
        else:
            getattr(t, key).extend(value)
    return t


def grpc_fuzz_cases(seed: int, n: int, photo: bytes) -> list[tuple[str, str, bytes]]:
    """`n` malformed (and a few good) gRPC calls, as (family, method path, serialized request bytes)."""
    import tensorflow as tf
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

    rng = random.Random(seed)
    predict_path = "/tensorflow.serving.PredictionService/Predict"
    metadata_path = "/tensorflow.serving.PredictionService/GetModelMetadata"
    status_path = "/tensorflow.serving.ModelService/GetModelStatus"

    def request(inputs=None, signature="", name=MODEL):
        r = predict_pb2.PredictRequest()
        r.model_spec.name = name
        r.model_spec.signature_name = signature
        for key, proto in (inputs if inputs is not None else {"image_bytes": tf.make_tensor_proto([photo])}).items():
            r.inputs[key].CopyFrom(proto)
        return r

    def bad_tensor():
        """(inputs, signature name) with a tensor a client may get wrong."""
        photos = lambda **fields: ({"image_bytes": tensor_proto(7, **fields)}, "")  # DT_STRING
        pixels = lambda dtype=1, **fields: ({"pixels": tensor_proto(dtype, **fields)}, "predict_pixels")  # DT_FLOAT
        odd_float = rng.choice([float("nan"), float("inf"), -float("inf"), 3.4e38, -3.4e38, 0.0, 255.0, 1e-45])
        return rng.choice([
            lambda: ({"image_bytes": tensor_proto(rng.choice([1, 3, 9, 10, 19, 999, -5, 0]), [1], float_val=[1.0])},
                     ""),
            lambda: photos(dims=[rng.choice([-1, -2**40, 2**40, 2**62])], string_val=[photo]),
            lambda: photos(dims=rng.choice([[], [1, 1], [3], [0]]), string_val=[photo]),
            lambda: photos(dims=[1], string_val=[photo, photo]),
            lambda: photos(dims=[1], string_val=[rng.randbytes(rng.randrange(0, 300))]),
            lambda: photos(dims=[1], string_val=[png_declaring(100_000, 100_000)]),
            lambda: photos(dims=[1], tensor_content=rng.randbytes(16)),
            lambda: pixels(dims=[1, 4, 4, 3], float_val=[odd_float]),
            lambda: pixels(dims=[1, 4, 4, 3], tensor_content=rng.randbytes(rng.choice([3, 191, 193, 4000]))),
            lambda: pixels(dims=[1, 4, 4, 3], float_val=[1.0] * rng.choice([2, 47, 49, 100])),
            lambda: pixels(dims=rng.choice([[1, 4, 4, 1], [1, 4, 4, 4], [4, 4, 3], [0, 4, 4, 3], [1, 1, 1, 3]]),
                           float_val=[1.0]),
            lambda: pixels(dims=[1, 2**20, 2**20, 3], float_val=[1.0]),
            lambda: pixels(2, dims=[1, 4, 4, 3], double_val=[1.0]),
            lambda: pixels(19, dims=[1, 4, 4, 3], half_val=[rng.randrange(65536)]),
            lambda: ({"pixels": tensor_proto(1, [1, 4, 4, 3], float_val=[1.0]),
                      "extra": tensor_proto(1, [1], float_val=[1.0])},
                     "predict_pixels"),
            lambda: ({"nope": tensor_proto(7, [1], string_val=[photo])}, ""),
            lambda: ({}, ""),
            lambda: ({"image_bytes": tensor_proto(7, [1], string_val=[photo])},
                     rng.choice(["nope", "predict_pixels", "\x00", "s" * 5000])),
        ])()

    def bad_spec(r):
        choice = rng.randrange(6)
        if choice == 0:
            r.model_spec.name = rng.choice(["cats", "", "\x00", "d" * 5000, MODEL.upper()])
        elif choice == 1:
            r.model_spec.version.value = rng.choice([0, -1, 2, 2**62, -2**63])
        elif choice == 2:
            r.model_spec.version_label = rng.choice(["stable", "", "canary", "\x00x"])
        elif choice == 3:
            r.model_spec.version.value = 1  # a good one: the served version
        elif choice == 4 and hasattr(r, "output_filter"):
            r.output_filter.extend(rng.choice([["nope"], ["probabilities"], ["probabilities", "probabilities"], [""]]))
        return r

    def metadata_request():
        m = get_model_metadata_pb2.GetModelMetadataRequest()
        m.model_spec.name = MODEL
        m.metadata_field.extend(rng.choice([[], ["signature_def"], ["nope"], ["signature_def", "x"], ["\x00"]]))
        return bad_spec(m)

    def status_request():
        s = get_model_status_pb2.GetModelStatusRequest()
        s.model_spec.name = MODEL
        return bad_spec(s)

    def mutated(data: bytes) -> bytes:
        data = bytearray(data)
        for _ in range(rng.randrange(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)

    small = request({"pixels": tensor_proto(1, [1, 4, 4, 3], float_val=[7.0])}, "predict_pixels").SerializeToString()
    families = {
        "random bytes": lambda: (rng.choice([predict_path, metadata_path, status_path]),
                                 rng.randbytes(rng.randrange(0, 2000))),
        "truncated": lambda: (predict_path, small[:rng.randrange(0, len(small))]),
        "bit flips": lambda: (predict_path, mutated(small)),
        "bad tensors": lambda: (predict_path, request(*bad_tensor()).SerializeToString()),
        "bad model spec": lambda: (predict_path, bad_spec(request()).SerializeToString()),
        "metadata": lambda: (metadata_path, metadata_request().SerializeToString()),
        "status": lambda: (status_path, status_request().SerializeToString()),
        "wrong message": lambda: (rng.choice([predict_path, metadata_path, status_path]), rng.choice([
            metadata_request, status_request, request])().SerializeToString()),
        "unknown method": lambda: (rng.choice(["/tensorflow.serving.PredictionService/Classify",
                                               "/tensorflow.serving.PredictionService/MultiInference",
                                               "/tensorflow.serving.ModelService/HandleReloadConfigRequest",
                                               "/tensorflow.serving.PredictionService/Nope", "/x/y"]), small),
        "oversized": lambda: (predict_path, request({"pixels": tensor_proto(1, [1, 700, 700, 3],
                                                                      tensor_content=bytes(700 * 700 * 12))},
                                                    "predict_pixels").SerializeToString()),
        "good": lambda: (predict_path, request().SerializeToString()),
    }
    names = sorted(families)
    picks = [names[i % len(names)] if i < len(names) else rng.choice(names) for i in range(n)]
    return [(name, *families[name]()) for name in picks]


def run_grpc_fuzz(target: str, cases, workers: int = 8) -> dict:
    """Sends the cases; {"status": Counter of gRPC status code names, "latency": [s]}."""
    import grpc

    channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", -1)])

    def one(case):
        family, method, data = case
        start = time.perf_counter()
        try:
            channel.unary_unary(method)(data, timeout=30)
            code = "OK"
        except grpc.RpcError as e:
            code = e.code().name
        return family, code, time.perf_counter() - start

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(one, cases))
    channel.close()
    return {"status": collections.Counter(c for _, c, _ in results), "latency": [t for _, _, t in results],
            "by_family": [(f, c) for f, c, _ in results]}


# ---------------------------------------------------------------------------------------------------- load


def saved_model_probabilities(base_path: str, photos: list[bytes]) -> np.ndarray:
    """(N, C) probabilities of the newest SavedModel version under `base_path`, one photo a call."""
    import tensorflow as tf

    version = max(int(d) for d in os.listdir(base_path) if d.isdigit())
    fn = tf.saved_model.load(os.path.join(base_path, str(version))).signatures["serving_default"]
    return np.concatenate([fn(image_bytes=tf.constant([p]))["probabilities"].numpy() for p in photos])


def _bad_rest_bodies() -> list[tuple[str, bytes]]:
    """Bad predict requests the server answers without closing the connection: (path, body)."""
    predict = f"/v1/models/{MODEL}:predict"
    return [(predict, json.dumps({"instances": [_b64(b"not a photo")]}).encode()),
            (predict, json.dumps({"instances": [{"photo": _b64(b"x")}]}).encode()),
            (predict, b'{"signature_name": "predict_pixels", "instances": [[[[NaN, 1, 2]]]]}'),
            (predict, b"[" * 1000 + b"]" * 1000),
            (predict, b'{"instances": ['),
            ("/v1/models/cats:predict", json.dumps({"instances": [_b64(b"x")]}).encode()),
            (f"/v1/models/{MODEL}/versions/7:predict", json.dumps({"instances": [_b64(b"x")]}).encode())]


def _load(clients: int, requests_per_client: int, make_client, seed: int) -> dict:
    """Runs `clients` threads, each `requests_per_client` calls of its own `make_client(rng)()`."""
    results, lock = [], threading.Lock()

    def worker(i):
        call = make_client(random.Random(seed * 1000 + i))
        mine = [call() for _ in range(requests_per_client)]
        with lock:
            results.extend(mine)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"requests": len(results), "status": collections.Counter(r[0] for r in results),
            "wrong": sum(r[1] for r in results), "good": sum(r[2] for r in results),
            "latency": [r[3] for r in results], "requests_per_s": len(results) / wall}


def rest_load(port: int, photos: list[bytes], reference: np.ndarray, clients: int = 32, requests_per_client: int = 8,
              seed: int = 0, bad_share: float = 0.25) -> dict:
    """`clients` keep-alive HTTP clients at once; good answers checked against `reference` (photo by photo).

    Returns requests, status (Counter), wrong (good requests whose answer is not 200 with the reference's
    probabilities, or bad ones not answered 4xx), good (count), latency (s), requests_per_s.
    """
    bad = _bad_rest_bodies()
    bodies = [json.dumps({"instances": [_b64(p)]}).encode() for p in photos]

    def make_client(rng):
        conn = [http.client.HTTPConnection("127.0.0.1", port, timeout=120)]

        def call():
            is_good = rng.random() >= bad_share
            i = rng.randrange(len(photos))
            path, body = (f"/v1/models/{MODEL}:predict", bodies[i]) if is_good else rng.choice(bad)
            start = time.perf_counter()
            for attempt in (0, 1):  # a connection the server closed: reconnect once
                try:
                    conn[0].request("POST", path, body, {"Content-Type": "application/json"})
                    response = conn[0].getresponse()
                    status, answer = response.status, response.read()
                    break
                except (http.client.HTTPException, OSError):
                    conn[0].close()
                    conn[0] = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                    status, answer = None, b""
            latency = time.perf_counter() - start
            if is_good:
                ok = status == 200 and np.abs(np.asarray(json.loads(answer)["predictions"][0]["probabilities"])
                                              - reference[i]).max() <= TOLERANCE
            else:
                ok = status is not None and 400 <= status < 500
            return status, not ok, is_good, latency

        return call

    return _load(clients, requests_per_client, make_client, seed)


def grpc_load(target: str, photos: list[bytes], reference: np.ndarray, clients: int = 32,
              requests_per_client: int = 8, seed: int = 0, bad_share: float = 0.25) -> dict:
    """As `rest_load`, with TF Serving's own client (stub, PredictRequest, tf.make_tensor_proto), a channel each."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    def request(inputs, name=MODEL, signature="", version=None):
        r = predict_pb2.PredictRequest()
        r.model_spec.name, r.model_spec.signature_name = name, signature
        if version is not None:
            r.model_spec.version.value = version
        for key, value in inputs.items():
            r.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        return r

    goods = [request({"image_bytes": [p]}) for p in photos]
    nan = np.full((1, 4, 4, 3), np.nan, np.float32)
    bad = [request({"image_bytes": [b"not a photo"]}), request({"photo": [b"x"]}),
           request({"pixels": nan}, signature="predict_pixels"), request({"image_bytes": [1.5]}),
           request({"image_bytes": [photos[0]]}, name="cats"), request({"image_bytes": [photos[0]]}, version=7)]

    def make_client(rng):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(target))

        def call():
            is_good = rng.random() >= bad_share
            i = rng.randrange(len(photos))
            start = time.perf_counter()
            try:
                response = stub.Predict(goods[i] if is_good else rng.choice(bad), timeout=120)
                code = "OK"
            except grpc.RpcError as e:
                code, response = e.code().name, None
            latency = time.perf_counter() - start
            if is_good:
                ok = code == "OK" and np.abs(tf.make_ndarray(response.outputs["probabilities"])[0]
                                             - reference[i]).max() <= TOLERANCE
            else:
                ok = code in ("INVALID_ARGUMENT", "NOT_FOUND")
            return code, not ok, is_good, latency

        return call

    return _load(clients, requests_per_client, make_client, seed)
