"""`python -m ssl_keras.serve`: a SavedModel base directory served like `tensorflow_model_server`.

It takes TF Serving's flags (`--port` is gRPC, `--rest_api_port` is REST,
`--model_name`, `--model_base_path`) and speaks both of its APIs, so a client
written for TF Serving works unchanged:

    REST  GET  /v1/models/<name>[/versions/<v>]            model status (HEAD: the same, no body)
          GET  /v1/models/<name>[/versions/<v>]/metadata   signatures
          POST /v1/models/<name>[/versions/<v>]:predict    {"instances": [...]} or {"inputs": ...}
    gRPC  tensorflow.serving.PredictionService/Predict, GetModelMetadata
          tensorflow.serving.ModelService/GetModelStatus   (see ssl_keras.serve_grpc)

Binary values travel as `{"b64": "..."}`. Like TF Serving's default version
policy, the newest version folder is served, and the base directory is polled
so that a new export is picked up. Both APIs share one model store.

Every client mistake gets a 4xx (gRPC: NOT_FOUND or INVALID_ARGUMENT) and a
message naming the input and what was expected. What a request may hold is
bounded by `Limits` (body bytes, JSON depth, values, pixels), and slow clients
are cut off by the header and body deadlines of `TimedH11Protocol`. Built on
Starlette (routing, requests) and uvicorn's h11 protocol (the HTTP server).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import dataclasses
import io
import json
import logging
import os
import re
import signal
import sys
import threading
import warnings

import h11
import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from ssl_keras import serve_json

DEFAULT_SIGNATURE = "serving_default"
GRPC_PORT, REST_PORT = 8500, 8501
HEADER_TIMEOUT_SECONDS = 10.0
BODY_TIMEOUT_MS = 30_000
DRAIN_FACTOR = 4
LARGE_REQUEST_BYTES = 2**20  # after a request at least this big, freed memory is handed back to the OS
PATH = re.compile(r"(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                  r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?")
VERSION = re.compile(r"[0-9]{1,18}")  # ASCII digits only (str.isdigit() also takes '²' and '١'); fits int64
log = logging.getLogger("ssl_keras.serve")


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may hold, over REST and gRPC alike.

    Attributes:
        max_body_bytes: REST bodies and gRPC messages; larger ones get 413 (gRPC: RESOURCE_EXHAUSTED).
        max_json_depth: nesting of arrays and objects in a REST body ({"instances": [[[[r, g, b]]]]} is 5).
        max_values: values in a request: over REST the JSON values of the body (numbers, strings,
            arrays and objects each count one, so a photo as pixels costs 4 a pixel and 2**22 is a
            1000 x 1000 photo), over gRPC the elements of the input tensors (3 a pixel). It bounds a
            request's memory: JSON that `json.loads` reads costs up to ~100 bytes a value.
        max_pixels: pixels of all the encoded photos of one request, as their headers declare them (a
            small file can decode to gigabytes).
        max_concurrent_predictions: requests parsed and run at the same time (REST and gRPC together);
            the others wait their turn.
    """

    max_body_bytes: int = 32 * 2**20
    max_json_depth: int = 32
    max_values: int = 2**22
    max_pixels: int = 50_000_000
    max_concurrent_predictions: int = 4


LIMITS = Limits()


class TFServingJSON(Response):
    """JSON as TF Serving writes it: NaN and Infinity allowed (see its REST API's "JSON conformance")."""

    media_type = "application/json"

    def render(self, content) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode("utf-8")


class RequestError(Exception):
    """A client error: answered with `status` and `{"error": message}` (gRPC: NOT_FOUND for 404, else
    INVALID_ARGUMENT)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _short(text: str, limit: int = 80) -> str:
    """`text` cut to `limit` characters for an error message (paths and names can be kilobytes long)."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _libc():
    """The C library if it is glibc (it has malloc_trim), else None."""
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


def keep_large_blocks_out_of_the_heap() -> None:
    """Makes glibc map every block over 128 KiB on its own, so that freeing it returns it to the OS.

    By default glibc raises that threshold each time such a block is freed (up to 32 MiB), after
    which request bodies and parsed arrays land in the heap and stay there.
    """
    libc = _libc()
    if libc is not None:
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD; setting it turns the raising off


def release_memory() -> None:
    """Hands the heap memory freed by a large request back to the OS (glibc keeps it otherwise)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


class Servable:
    """One loaded version: its signatures, and their definitions for the metadata APIs."""

    def __init__(self, path: str, version: int):
        import tensorflow as tf
        from google.protobuf import json_format
        from tensorflow.core.protobuf import saved_model_pb2

        self.version = version
        self.model = tf.saved_model.load(path)
        proto = saved_model_pb2.SavedModel()
        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            proto.ParseFromString(f.read())
        self.signature_def_protos = dict(proto.meta_graphs[0].signature_def)
        self.signature_defs = {key: json_format.MessageToDict(sig, preserving_proto_field_name=True)
                               for key, sig in self.signature_def_protos.items()}

    def inputs(self, signature_name: str) -> dict:
        """{input name: tf.TensorSpec} of a signature."""
        return self.signature(signature_name).structured_input_signature[1]

    def signature(self, signature_name: str):
        """The concrete function of a signature; 400 when there is no such signature."""
        if signature_name not in self.model.signatures:
            raise RequestError(400, f"Serving signature name: \"{_short(signature_name)}\" not found in "
                                    f"signature def. Expected one of {sorted(self.model.signatures)}.")
        return self.model.signatures[signature_name]

    def run(self, signature_name: str, arrays: dict) -> dict:
        """{output name: array} of a signature on checked inputs; 400 when the model's ops refuse them."""
        import tensorflow as tf

        try:
            outputs = self.signature(signature_name)(**{n: tf.constant(a) for n, a in arrays.items()})
            return {n: t.numpy() for n, t in outputs.items()}
        except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError) as e:
            raise RequestError(400, f"Cannot run signature {signature_name!r} on this input: "
                                    f"{_op_error_message(e)}") from None


def parse_version(version: str | int | None) -> int | None:
    """A model version from a URL or a proto; 400 unless it is ASCII digits (at most 18 of them)."""
    if version is None or isinstance(version, int):
        return version
    if not VERSION.fullmatch(version):
        raise RequestError(400, f"Model version must be an integer of ASCII digits 0-9 (at most 18). "
                                f"Received: {_short(version)!r}")
    return int(version)


class ModelStore:
    """The served versions of one model: the newest integer-named folder under `base_path`.

    REST and gRPC share it, and `slots` bounds how many requests are parsed and run at once.
    """

    def __init__(self, base_path: str, name: str, max_concurrent_predictions: int = LIMITS.max_concurrent_predictions):
        if not os.path.isdir(base_path):
            raise ValueError(f"Model base path {base_path!r} is not a folder. Expected the folder holding version "
                             "folders 1, 2, ... (e.g. export/saved_model/dog_breeds).")
        self.base_path, self.name = base_path, name
        self.servables: dict[int, Servable] = {}
        self.slots = threading.BoundedSemaphore(max_concurrent_predictions)
        self._lock = threading.Lock()
        if not self.refresh():
            raise ValueError(f"No version folder (1, 2, ...) with a saved_model.pb under {base_path!r}. "
                             "Run `python -m ssl_keras.run export` first.")

    def refresh(self) -> bool:
        """Loads the newest version if it is not loaded yet and unloads the older ones; True if one is served."""
        on_disk = [int(d) for d in os.listdir(self.base_path)
                   if VERSION.fullmatch(d) and os.path.exists(os.path.join(self.base_path, d, "saved_model.pb"))]
        if not on_disk:
            return bool(self.servables)
        newest = max(on_disk)
        if newest not in self.servables:
            log.info("Loading %s version %d from %s", self.name, newest, self.base_path)
            servable = Servable(os.path.join(self.base_path, str(newest)), newest)
            with self._lock:
                self.servables = {newest: servable}
        return True

    def start_polling(self, seconds: float) -> threading.Event:
        """Looks for a newer version every `seconds` in a daemon thread; set the returned event to stop it."""
        stop = threading.Event()

        def poll():
            while not stop.wait(seconds):
                try:
                    self.refresh()
                except Exception:  # a half-copied version: try again at the next poll
                    log.exception("Could not load a new version from %s", self.base_path)

        if seconds > 0:
            threading.Thread(target=poll, name="poll-model-versions", daemon=True).start()
        return stop

    def get(self, name: str, version: str | int | None = None, label: str | None = None) -> Servable:
        """The servable a request names; 404 when the model or version is not served, 400 for a label."""
        version = parse_version(version)
        with self._lock:
            servables = dict(self.servables)
        request = f"Latest({_short(name)})" if version is None else f"Specific({_short(name)}, {version})"
        if name != self.name:
            raise RequestError(404, f"Servable not found for request: {request}. This server serves "
                                    f"model {self.name!r}.")
        if label is not None:  # like TF Serving without version labels in its config
            raise RequestError(400, f"Unrecognized servable version label: {_short(label)}. No labels are "
                                    f"configured; name a version (served: {sorted(servables)}) or none.")
        if version is None:
            return servables[max(servables)]
        if version not in servables:
            raise RequestError(404, f"Servable not found for request: {request}. Served versions: "
                                    f"{sorted(servables)}.")
        return servables[version]


def check_input(name: str, array: np.ndarray, spec, limits: Limits) -> np.ndarray:
    """`array` if it fits the signature input `spec` and `limits`; 400 naming the input otherwise.

    Shared by REST and gRPC: the shape, non-finite numbers (NaN, +-Infinity, or a number too large
    for the dtype) and the pixels the encoded photos declare.
    """
    import tensorflow as tf

    expected = _spec_text(spec)
    if not spec.shape.is_compatible_with(array.shape):
        raise RequestError(400, f"Input {name!r} has shape {tuple(array.shape)}; expected shape {expected} "
                                f"of {spec.dtype.name}.")
    if array.size > limits.max_values:
        raise RequestError(400, f"Input {name!r} has {array.size:,} values; the limit is {limits.max_values:,}.")
    if spec.dtype.is_floating and not np.isfinite(array).all():
        raise RequestError(400, f"Input {name!r} holds NaN or infinite values (or numbers too large for "
                                f"{spec.dtype.name}); expected finite numbers, pixels 0..255.")
    if spec.dtype == tf.string:
        pixels = 0
        for i, data in enumerate(array.ravel()):
            pixels += _declared_pixels(data)
            if pixels > limits.max_pixels:
                raise RequestError(400, f"Input {name!r}: the photos up to item {i} declare {pixels:,} pixels; "
                                        f"the limit is {limits.max_pixels:,} pixels a request.")
    return array


def _spec_text(spec) -> str:
    """"(-1, -1, -1, 3)": a signature input's shape, -1 for any size."""
    return "(" + ", ".join("-1" if d is None else str(d) for d in spec.shape.as_list()) + ")"


def _declared_pixels(data: bytes) -> int:
    """Width x height from a photo's header; 0 when Pillow cannot read it (the model's decoder then says why)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit here is ours
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
    except Image.DecompressionBombError as e:  # over twice Pillow's own limit; its message has the size
        size = re.search(r"\((\d+) pixels\)", str(e))
        return int(size[1]) if size else 2**62
    except Exception:
        return 0
    return width * height


def _decode_b64(value, where: str):
    """Replaces every `{"b64": ...}` in a JSON value by the bytes it encodes."""
    if isinstance(value, dict):
        if set(value) == {"b64"}:
            if not isinstance(value["b64"], str):
                raise RequestError(400, f"{where}: a \"b64\" value must be a string. "
                                        f"Received: {_short(repr(value['b64']))}")
            try:
                return base64.b64decode(value["b64"], validate=True)
            except ValueError as e:
                raise RequestError(400, f"{where}: invalid base64 data ({e}).") from None
        raise RequestError(400, f"{where}: unexpected object with keys {_short(str(sorted(value)))}. Expected a "
                                "tensor value (number, string, list) or {\"b64\": ...}.")
    if isinstance(value, list):
        return [_decode_b64(v, where) for v in value]
    return value


def _to_array(value, spec, name: str, limits: Limits = LIMITS) -> np.ndarray:
    """A JSON value as an array of the signature input `spec`; 400 when its type, shape or values do not fit."""
    import tensorflow as tf

    try:
        if spec.dtype == tf.string:
            array = np.asarray(_decode_b64(value, f"Input {name!r}"), dtype=object)
            if array.dtype != object or any(not isinstance(v, (str, bytes)) for v in array.ravel()):
                raise ValueError("expected strings or {\"b64\": ...}")
            array = np.vectorize(lambda v: v.encode() if isinstance(v, str) else v, otypes=[object])(array)
        else:
            array = _as_numbers(np.asarray(value), spec.dtype.as_numpy_dtype)
    except (ValueError, TypeError, OverflowError) as e:
        items = "strings or {\"b64\": ...}" if spec.dtype == tf.string else "numbers"
        raise RequestError(400, f"Input {name!r} cannot be read as a {spec.dtype.name} tensor of shape "
                                f"{_spec_text(spec)} ({_short(str(e), 200)}). Expected {items} in nested lists "
                                "of equal lengths (rectangular).") from None
    return check_input(name, array, spec, limits)


def _as_numbers(array: np.ndarray, dtype) -> np.ndarray:
    """`array` (JSON numbers) as `dtype`; ValueError for strings, and for numbers a whole-number dtype cannot hold.

    Floats too large for a float dtype become infinite here; `check_input` refuses them.
    """
    dtype = np.dtype(dtype)
    if array.dtype.kind not in "biufO":
        raise ValueError(f"expected numbers, not {array.dtype.kind == 'U' and 'strings' or array.dtype}")
    if array.dtype == object:  # integers too large for int64, None, objects: numpy says which
        array = np.asarray(array.tolist(), dtype=np.float64 if dtype.kind == "f" else dtype)
    if dtype.kind in "iu" and array.dtype.kind == "f" and not (np.isfinite(array).all()
                                                              and (array == np.round(array)).all()):
        raise ValueError(f"expected whole numbers for {dtype.name}")
    if dtype.kind in "iu" and array.size and (array.min() < np.iinfo(dtype).min or array.max() > np.iinfo(dtype).max):
        raise ValueError(f"a number is out of the range of {dtype.name}, {np.iinfo(dtype).min}..{np.iinfo(dtype).max}")
    with np.errstate(over="ignore", invalid="ignore"):
        return array.astype(dtype, copy=False)


def parse_json(raw: bytes, limits: Limits = LIMITS) -> dict:
    """A request body as a JSON object; 400 when it is not one, is nested too deep or holds too many values.

    Read by `serve_json.loads`: bounded before any Python object is built, and photos as pixels
    read by numpy rather than into Python lists.
    """
    try:
        body = serve_json.loads(raw, limits.max_json_depth, limits.max_values)
    except ValueError as e:
        raise RequestError(400, str(e)) from None
    if not isinstance(body, dict):
        raise RequestError(400, f"Request body must be a JSON object. Received a {type(body).__name__}.")
    return body


def parse_predict(body: dict, inputs: dict, limits: Limits = LIMITS) -> tuple[dict, bool]:
    """({input name: array}, row format?) from a predict request body.

    Row format (`instances`): a list, one item per example; with one input an
    item is its value (or `{name: value}`). Column format (`inputs`): the value
    of the only input, or `{name: value}`.
    """
    if ("instances" in body) == ("inputs" in body):
        raise RequestError(400, "Request must have exactly one of \"instances\" (row format) or \"inputs\" "
                                f"(column format). Received keys: {_short(str(sorted(body)))}")
    names = sorted(inputs)
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, (list, np.ndarray)) or not len(rows):  # ndarray: a long array of numbers
            raise RequestError(400, "\"instances\" must be a non-empty list, one item per example.")
        named = isinstance(rows, list) and all(isinstance(r, dict) and set(r) != {"b64"} for r in rows)
        if len(names) > 1 and not named:
            raise RequestError(400, f"Each instance must be an object with keys {names}.")
        if named:
            for i, r in enumerate(rows):
                if set(r) != set(names):
                    raise RequestError(400, f"Instance {i} has keys {_short(str(sorted(r)))}; expected {names}.")
            columns = {n: [r[n] for r in rows] for n in names}
        else:
            columns = {names[0]: rows}
        return {n: _to_array(v, inputs[n], n, limits) for n, v in columns.items()}, True
    columns = body["inputs"]
    if not (isinstance(columns, dict) and set(columns) != {"b64"}):
        if len(names) > 1:
            raise RequestError(400, f"\"inputs\" must be an object with keys {names}.")
        columns = {names[0]: columns}
    if set(columns) != set(names):
        raise RequestError(400, f"\"inputs\" has keys {_short(str(sorted(columns)))}; expected {names}.")
    return {n: _to_array(v, inputs[n], n, limits) for n, v in columns.items()}, False


def _jsonable(name: str, array: np.ndarray):
    if array.dtype == object:
        if name.endswith("_bytes"):
            return np.vectorize(lambda b: {"b64": base64.b64encode(b).decode()}, otypes=[object])(array).tolist()
        return np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(array).tolist()
    return array.tolist()


def _op_error_message(error) -> str:
    """The op's own words from a TensorFlow runtime error, without node names and stack notes."""
    noise = ("Graph execution error", "Detected at node", "<stack traces unavailable>")
    lines = [line.strip() for line in (error.message or "").splitlines()
             if line.strip() and not line.startswith((" ", "\t")) and not line.startswith(noise)]
    return lines[-1] if lines else type(error).__name__


def parse_request(servable: Servable, raw: bytes, limits: Limits = LIMITS) -> tuple[str, dict, bool]:
    """(signature name, {input name: array}, row format?) of a predict request body.

    The parsed JSON (Python lists, tens of bytes a value) is gone when this returns, before the
    model runs: objects that the run allocates and keeps would otherwise pin the memory it sat in.
    """
    body = parse_json(raw, limits)
    signature_name = body.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise RequestError(400, f"\"signature_name\" must be a string. Received a {type(signature_name).__name__}.")
    signature_name = signature_name or DEFAULT_SIGNATURE
    arrays, rows = parse_predict(body, servable.inputs(signature_name), limits)
    return signature_name, arrays, rows


def predict(servable: Servable, raw: bytes, limits: Limits = LIMITS) -> dict:
    """Runs a predict request body; returns the response body (`predictions` or `outputs`)."""
    signature_name, arrays, rows = parse_request(servable, raw, limits)
    outputs = servable.run(signature_name, arrays)
    if not rows:
        return {"outputs": {n: _jsonable(n, a) for n, a in outputs.items()}}
    if len(outputs) == 1:
        (n, a), = outputs.items()
        return {"predictions": _jsonable(n, a)}
    columns = {n: _jsonable(n, a) for n, a in outputs.items()}
    count = len(next(iter(columns.values())))
    return {"predictions": [{n: c[i] for n, c in columns.items()} for i in range(count)]}


def status(servable: Servable) -> dict:
    return {"model_version_status": [{"version": str(servable.version), "state": "AVAILABLE",
                                      "status": {"error_code": "OK", "error_message": ""}}]}


def metadata(name: str, servable: Servable) -> dict:
    return {"model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
            "metadata": {"signature_def": {"signature_def": servable.signature_defs}}}


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body; 413 past `max_bytes`."""
    # A body a little over the limit is read and dropped, so that a client still sending it can read
    # the 413; a far bigger one is refused at once and the connection closed.
    drain = DRAIN_FACTOR * max_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > drain:
        raise RequestError(413, f"Request body is {_short(declared)} bytes; the limit is {max_bytes} bytes.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= max_bytes:
            chunks.append(chunk)
        elif size > drain:
            break
    if size > max_bytes:
        raise RequestError(413, f"Request body is over the limit of {max_bytes} bytes.")
    return b"".join(chunks)


def answer_predict(store: ModelStore, servable: Servable, raw: bytes, limits: Limits) -> tuple[int, bytes]:
    """(status, JSON answer) to a predict body, parsed and run in one of the store's slots (a worker thread).

    A RequestError is answered here: raised on, its traceback would keep the body and the parsed
    JSON alive until the garbage collector breaks the cycle it sits in.
    """
    with store.slots:
        try:
            return 200, TFServingJSON(predict(servable, raw, limits)).body
        except RequestError as e:
            return e.status, TFServingJSON({"error": str(e)}).body
        finally:
            if len(raw) >= LARGE_REQUEST_BYTES:
                release_memory()


def create_app(base_path: str | None = None, model_name: str | None = None, *, store: ModelStore | None = None,
               limits: Limits = LIMITS, max_body_bytes: int | None = None, poll_seconds: float = 2.0) -> Starlette:
    """The Starlette app serving TF Serving's REST API.

    Args:
        base_path: folder of integer-named SavedModel versions (or give `store`).
        model_name: the name in the URLs (or give `store`).
        store: a model store to share (with the gRPC server); made from `base_path` when None.
        limits: what a request may hold.
        max_body_bytes: shorthand for `limits.max_body_bytes`.
        poll_seconds: how often to look for a newer version while the app runs (0: never).
    """
    if max_body_bytes is not None:
        limits = dataclasses.replace(limits, max_body_bytes=max_body_bytes)
    if store is None:
        store = ModelStore(base_path, model_name, limits.max_concurrent_predictions)

    async def models(request: Request) -> Response:
        m = PATH.fullmatch(request.scope["path"][len("/v1/models/"):])  # not path_params: its "$" drops a "\n"
        if m is None:
            raise RequestError(404, f"Malformed request: {request.method} {_short(request.scope['path'])}. "
                                    "Expected /v1/models/<name>[/versions/<version>][/metadata|:predict].")
        servable = store.get(m["name"], m["version"], m["label"])
        if request.method in ("GET", "HEAD"):
            if m["verb"]:
                raise RequestError(405, f"Use POST for :{m['verb']}.")
            return TFServingJSON(metadata(m["name"], servable) if m["metadata"] else status(servable))
        if m["verb"] != "predict":
            what = f":{m['verb']}" if m["verb"] else "this URL"
            raise RequestError(400 if m["verb"] in ("classify", "regress") else 404,
                               f"POST {what} is not supported. Expected POST .../{m['name']}:predict.")
        raw = await read_body(request, limits.max_body_bytes)
        code, answer = await run_in_threadpool(answer_predict, store, servable, raw, limits)
        return Response(answer, status_code=code, media_type="application/json")

    async def request_error(request, exc: RequestError):
        return TFServingJSON({"error": str(exc)}, status_code=exc.status)

    async def http_error(request, exc: HTTPException):
        return TFServingJSON({"error": f"{exc.detail}: {request.method} {_short(request.scope['path'])}"},
                             status_code=exc.status_code, headers=exc.headers)

    async def disconnected(request, exc):
        return Response(status_code=400)

    async def internal_error(request, exc: Exception):
        log.exception("Internal error on %s %s", request.method, _short(request.scope["path"]))
        return TFServingJSON({"error": f"Internal error ({type(exc).__name__}); see the server log."},
                             status_code=500)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        stop = store.start_polling(poll_seconds)
        yield
        stop.set()

    app = Starlette(
        routes=[Route("/v1/models/{rest:path}", models, methods=["GET", "POST"])],  # HEAD comes with GET
        exception_handlers={RequestError: request_error, HTTPException: http_error,
                            ClientDisconnect: disconnected, Exception: internal_error},
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # a redirect is built from the Host header, which may be junk
    app.state.store = store
    app.state.limits = limits
    return app


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with deadlines for reading a request (uvicorn has none of its own).

    The headers must be in within `header_seconds` of the connection opening or, on a kept-alive
    connection, of the next request's first byte; the body within `body_seconds` of the headers.
    Each deadline is fixed when its phase starts, so a client sending a byte now and then does not
    extend it. A late client gets 408 and the connection is closed. Use `timed_protocol` to set them.
    """

    header_seconds = HEADER_TIMEOUT_SECONDS
    body_seconds = BODY_TIMEOUT_MS / 1000
    _phase: str | None = None
    _deadline = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._enter("headers")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow(data_pending=True)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow(data_pending=bool(self.conn.trailing_data[0]))

    def connection_lost(self, exc) -> None:
        self._enter(None)
        super().connection_lost(exc)

    def _follow(self, data_pending: bool) -> None:
        """Moves the deadline to the phase the client is in: headers, body, or none (a request is in)."""
        state = self.conn.their_state
        if self.transport.is_closing():
            self._enter(None)
        elif state is h11.SEND_BODY:
            self._enter("body")
        elif state is h11.IDLE and data_pending:
            self._enter("headers")
        elif state is not h11.IDLE:
            self._enter(None)
        elif self._phase == "body":  # the answer went out before the next request began (keep-alive idle)
            self._enter(None)

    def _enter(self, phase: str | None) -> None:
        if phase == self._phase:
            return
        if self._deadline is not None:
            self._deadline.cancel()
        self._phase, self._deadline = phase, None
        if phase is not None:
            seconds = self.header_seconds if phase == "headers" else self.body_seconds
            self._deadline = self.loop.call_later(seconds, self._expired, phase, seconds)

    def _expired(self, phase: str, seconds: float) -> None:
        self._phase = self._deadline = None
        if self.transport.is_closing():
            return
        if phase == "headers" or not self.cycle.response_started:  # (self.cycle is this request's once in body)
            body = json.dumps({"error": f"Request {phase} not received within {seconds:g} s; the connection is "
                                        "closed."}).encode()
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                 b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        if self.cycle is not None:  # the app, if it waits for the body, reads a disconnect
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()


def timed_protocol(header_seconds: float = HEADER_TIMEOUT_SECONDS,
                   body_seconds: float = BODY_TIMEOUT_MS / 1000) -> type[TimedH11Protocol]:
    """A `TimedH11Protocol` class with these deadlines, for `uvicorn.Config(http=...)`."""
    return type("TimedH11Protocol", (TimedH11Protocol,),
                {"header_seconds": header_seconds, "body_seconds": body_seconds})


def uvicorn_config(app, host: str = "127.0.0.1", port: int = REST_PORT, *,
                   header_seconds: float = HEADER_TIMEOUT_SECONDS, body_seconds: float = BODY_TIMEOUT_MS / 1000):
    """The uvicorn config of the REST server: the timed h11 protocol, quiet logs."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, http=timed_protocol(header_seconds, body_seconds),
                          log_level="warning", lifespan="on")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ssl_keras.serve", allow_abbrev=False,
        description="Serve a SavedModel base directory like tensorflow_model_server: gRPC on --port, REST on "
                    "--rest_api_port. Flags with underscores are TF Serving's; hyphenated spellings are aliases.")
    p.add_argument("--port", type=int, default=GRPC_PORT,
                   help=f"gRPC port, as in TF Serving; 0: no gRPC (default: {GRPC_PORT})")
    p.add_argument("--rest_api_port", "--rest-api-port", type=int, default=REST_PORT,
                   help=f"REST port; 0: no REST (default: {REST_PORT}, as TF Serving's Docker image; "
                        "tensorflow_model_server's own default is 0)")
    p.add_argument("--model_name", "--model-name", default="dog_breeds",
                   help="the model's name in URLs and requests (default: dog_breeds)")
    p.add_argument("--model_base_path", "--model-base-path",
                   default=os.path.join("export", "saved_model", "dog_breeds"),
                   help="folder of version folders 1, 2, ... (default: export/saved_model/dog_breeds)")
    p.add_argument("--rest_api_timeout_in_ms", type=int, default=BODY_TIMEOUT_MS,
                   help=f"time a REST client has to send a request's body once its headers are in; later: 408 "
                        f"(default: {BODY_TIMEOUT_MS})")
    p.add_argument("--header-timeout-seconds", type=float, default=HEADER_TIMEOUT_SECONDS,
                   help="time a REST client has to send a request's headers, from the connection opening or the "
                        f"request's first byte; later: 408 (default: {HEADER_TIMEOUT_SECONDS:g})")
    p.add_argument("--file_system_poll_wait_seconds", "--poll-seconds", dest="poll_seconds", type=float, default=2.0,
                   help="how often to look for a newer version folder; 0: never (default: 2)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address both ports bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--max-body-bytes", type=int, default=LIMITS.max_body_bytes,
                   help=f"larger REST bodies get 413, larger gRPC messages RESOURCE_EXHAUSTED "
                        f"(default: {LIMITS.max_body_bytes})")
    p.add_argument("--max-json-depth", type=int, default=LIMITS.max_json_depth,
                   help=f"deeper JSON nesting gets 400 (default: {LIMITS.max_json_depth})")
    p.add_argument("--max-values", type=int, default=LIMITS.max_values,
                   help=f"more values in a request's inputs get 400 / INVALID_ARGUMENT (default: {LIMITS.max_values})")
    p.add_argument("--max-pixels", type=int, default=LIMITS.max_pixels,
                   help="more pixels declared by a request's encoded photos get 400 / INVALID_ARGUMENT "
                        f"(default: {LIMITS.max_pixels})")
    p.add_argument("--max-concurrent-predictions", type=int, default=LIMITS.max_concurrent_predictions,
                   help=f"requests parsed and run at once; the others wait (default: "
                        f"{LIMITS.max_concurrent_predictions})")
    return p


def _check_args(args) -> str | None:
    """What is wrong with the parsed flags, or None."""
    for flag in ("port", "rest_api_port"):
        if not 0 <= getattr(args, flag) <= 65535:
            return f"--{flag} must be 0..65535. Received: {getattr(args, flag)}"
    if args.port == 0 and args.rest_api_port == 0:
        return "--port and --rest_api_port are both 0: nothing to serve. Expected a gRPC or a REST port."
    if args.port == args.rest_api_port:
        return f"--port (gRPC) and --rest_api_port (REST) are both {args.port}. Expected two ports."
    for flag in ("--max-body-bytes", "--max-json-depth", "--max-values", "--max-pixels",
                 "--max-concurrent-predictions", "--rest_api_timeout_in_ms", "--header-timeout-seconds"):
        value = getattr(args, flag[2:].replace("-", "_"))
        if value <= 0:
            return f"{flag} must be > 0. Received: {value}"
    return None


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # TensorFlow's oneDNN CPU allocator keeps every block it ever allocated: one 50-megapixel photo would
    # hold ~750 MB for the life of the server. Without oneDNN, freed tensors go back to the OS.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    from ssl_keras import quiet

    quiet.import_tensorflow()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    problem = _check_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    keep_large_blocks_out_of_the_heap()
    limits = Limits(args.max_body_bytes, args.max_json_depth, args.max_values, args.max_pixels,
                    args.max_concurrent_predictions)
    try:
        store = ModelStore(args.model_base_path, args.model_name, limits.max_concurrent_predictions)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    grpc_server = None
    if args.port:
        from ssl_keras import serve_grpc

        try:
            grpc_server = serve_grpc.start(store, args.host, args.port, limits)
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    stop = store.start_polling(args.poll_seconds)
    ends = [f"gRPC on {args.host}:{args.port}"] if args.port else []
    if args.rest_api_port:
        ends.append(f"REST on http://{args.host}:{args.rest_api_port}/v1/models/{args.model_name}")
    print(f"Serving {args.model_name} version {max(store.servables)} from {args.model_base_path}: "
          f"{', '.join(ends)}", flush=True)
    try:
        if args.rest_api_port:
            import uvicorn

            app = create_app(store=store, limits=limits, poll_seconds=0)
            uvicorn.Server(uvicorn_config(app, args.host, args.rest_api_port,
                                          header_seconds=args.header_timeout_seconds,
                                          body_seconds=args.rest_api_timeout_in_ms / 1000)).run()
        else:
            done = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: done.set())
            done.wait()
    finally:
        stop.set()
        if grpc_server is not None:
            grpc_server.stop(grace=2).wait()
    return 0


if __name__ == "__main__":
    from ssl_keras.serve import main as _main  # the importable module, not this __main__ copy: one RequestError

    sys.exit(_main())
