"""`python -m ssl_keras.serve`: a SavedModel base directory over HTTP with TF Serving's REST API.

A client written for TF Serving works unchanged:

    GET  /v1/models/<name>[/versions/<v>]            model status
    GET  /v1/models/<name>[/versions/<v>]/metadata   signatures
    POST /v1/models/<name>[/versions/<v>]:predict    {"instances": [...]} or {"inputs": ...}

Binary values travel as `{"b64": "..."}`. Like TF Serving's default version
policy, the newest version folder is served, and the base directory is polled
so that a new export is picked up. Bad requests get a 4xx and `{"error": ...}`.
Built on Starlette (routing, requests) and uvicorn (the HTTP server).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import logging
import os
import re
import sys
import threading

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DEFAULT_SIGNATURE = "serving_default"
MAX_BODY_BYTES = 32 * 2**20
MAX_PIXELS = 50_000_000
DRAIN_FACTOR = 4
PATH = re.compile(r"^(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
                  r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?$")
log = logging.getLogger("ssl_keras.serve")


class TFServingJSON(JSONResponse):
    """JSON as TF Serving writes it: NaN and Infinity allowed (see its REST API's "JSON conformance")."""

    def render(self, content) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode("utf-8")


class RequestError(Exception):
    """A client error: answered with `status` and `{"error": message}`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Servable:
    """One loaded version: its signatures, and their definitions for the metadata API."""

    def __init__(self, path: str, version: int):
        import tensorflow as tf
        from google.protobuf import json_format
        from tensorflow.core.protobuf import saved_model_pb2

        self.version = version
        self.model = tf.saved_model.load(path)
        proto = saved_model_pb2.SavedModel()
        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            proto.ParseFromString(f.read())
        self.signature_defs = {
            key: json_format.MessageToDict(sig, preserving_proto_field_name=True)
            for key, sig in proto.meta_graphs[0].signature_def.items()
        }

    def inputs(self, signature_name: str) -> dict:
        """{input name: tf.TensorSpec} of a signature."""
        return self.signature(signature_name).structured_input_signature[1]

    def signature(self, signature_name: str):
        if signature_name not in self.model.signatures:
            raise RequestError(400, f"Serving signature name: \"{signature_name}\" not found in signature def. "
                                    f"Expected one of {sorted(self.model.signatures)}.")
        return self.model.signatures[signature_name]


class ModelStore:
    """The served versions of one model: the newest integer-named folder under `base_path`."""

    def __init__(self, base_path: str, name: str):
        if not os.path.isdir(base_path):
            raise ValueError(f"Model base path {base_path!r} is not a folder. Expected the folder holding version "
                             "folders 1, 2, ... (e.g. export/saved_model/dog_breeds).")
        self.base_path, self.name = base_path, name
        self.servables: dict[int, Servable] = {}
        self._lock = threading.Lock()
        if not self.refresh():
            raise ValueError(f"No version folder (1, 2, ...) with a saved_model.pb under {base_path!r}. "
                             "Run `python -m ssl_keras.run export` first.")

    def refresh(self) -> bool:
        """Loads the newest version if it is not loaded yet and unloads the older ones; True if one is served."""
        on_disk = [int(d) for d in os.listdir(self.base_path)
                   if d.isdigit() and os.path.exists(os.path.join(self.base_path, d, "saved_model.pb"))]
        if not on_disk:
            return bool(self.servables)
        newest = max(on_disk)
        if newest not in self.servables:
            log.info("Loading %s version %d from %s", self.name, newest, self.base_path)
            servable = Servable(os.path.join(self.base_path, str(newest)), newest)
            with self._lock:
                self.servables = {newest: servable}
        return True

    def get(self, name: str, version: str | None) -> Servable:
        """The servable a request names; 404 when the model or version is not served."""
        if version is not None and not version.isdigit():
            raise RequestError(400, f"Model version must be an integer. Received: {version!r}")
        with self._lock:
            servables = dict(self.servables)
        request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
        if name != self.name:
            raise RequestError(404, f"Servable not found for request: {request}. This server serves "
                                    f"model {self.name!r}.")
        if version is None:
            return servables[max(servables)]
        if int(version) not in servables:
            raise RequestError(404, f"Servable not found for request: {request}. Served versions: "
                                    f"{sorted(servables)}.")
        return servables[int(version)]


def _decode_b64(value, where: str):
    """Replaces every `{"b64": ...}` in a JSON value by the bytes it encodes."""
    if isinstance(value, dict):
        if set(value) == {"b64"}:
            if not isinstance(value["b64"], str):
                raise RequestError(400, f"{where}: a \"b64\" value must be a string. Received: {value['b64']!r}")
            try:
                return base64.b64decode(value["b64"], validate=True)
            except ValueError as e:
                raise RequestError(400, f"{where}: invalid base64 data ({e}).") from None
        raise RequestError(400, f"{where}: unexpected object with keys {sorted(value)}. Expected a tensor "
                                "value (number, string, list) or {\"b64\": ...}.")
    if isinstance(value, list):
        return [_decode_b64(v, where) for v in value]
    return value


def _to_array(value, spec, name: str) -> np.ndarray:
    """A JSON value as an array of the signature input `spec`; 400 when its type or shape does not fit."""
    import tensorflow as tf

    value = _decode_b64(value, f"Input {name!r}")
    expected = "(" + ", ".join("-1" if d is None else str(d) for d in spec.shape.as_list()) + ")"
    try:
        if spec.dtype == tf.string:
            array = np.asarray(value, dtype=object)
            if array.dtype != object or any(not isinstance(v, (str, bytes)) for v in array.ravel()):
                raise ValueError("expected strings or {\"b64\": ...}")
            array = np.vectorize(lambda v: v.encode() if isinstance(v, str) else v, otypes=[object])(array)
        else:
            array = np.asarray(value, dtype=spec.dtype.as_numpy_dtype)
    except (ValueError, TypeError, OverflowError) as e:
        raise RequestError(400, f"Input {name!r} cannot be read as a {spec.dtype.name} tensor of shape "
                                f"{expected} ({e}). Nested lists must be rectangular.") from None
    if not spec.shape.is_compatible_with(array.shape):
        raise RequestError(400, f"Input {name!r} has shape {tuple(array.shape)}; expected shape {expected} "
                                f"of {spec.dtype.name}.")
    if spec.dtype == tf.string:
        for i, data in enumerate(array.ravel()):
            _check_image_size(data, f"Input {name!r}, item {i}")
    return array


def _check_image_size(data: bytes, where: str) -> None:
    """400 for a photo whose header declares more than MAX_PIXELS (a small file can decode to gigabytes)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except Exception:  # not an image Pillow knows: the model's decoder has the last word
        return
    if width * height > MAX_PIXELS:
        raise RequestError(400, f"{where}: the photo is {width}x{height} pixels; expected at most "
                                f"{MAX_PIXELS:,} pixels.")


def parse_predict(body: dict, inputs: dict) -> tuple[dict, bool]:
    """({input name: array}, row format?) from a predict request body.

    Row format (`instances`): a list, one item per example; with one input an
    item is its value (or `{name: value}`). Column format (`inputs`): the value
    of the only input, or `{name: value}`.
    """
    if ("instances" in body) == ("inputs" in body):
        raise RequestError(400, "Request must have exactly one of \"instances\" (row format) or \"inputs\" "
                                f"(column format). Received keys: {sorted(body)}")
    names = sorted(inputs)
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise RequestError(400, "\"instances\" must be a non-empty list, one item per example.")
        named = all(isinstance(r, dict) and set(r) != {"b64"} for r in rows)
        if len(names) > 1 and not named:
            raise RequestError(400, f"Each instance must be an object with keys {names}.")
        if named:
            for i, r in enumerate(rows):
                if set(r) != set(names):
                    raise RequestError(400, f"Instance {i} has keys {sorted(r)}; expected {names}.")
            columns = {n: [r[n] for r in rows] for n in names}
        else:
            columns = {names[0]: rows}
        return {n: _to_array(v, inputs[n], n) for n, v in columns.items()}, True
    columns = body["inputs"]
    if not (isinstance(columns, dict) and set(columns) != {"b64"}):
        if len(names) > 1:
            raise RequestError(400, f"\"inputs\" must be an object with keys {names}.")
        columns = {names[0]: columns}
    if set(columns) != set(names):
        raise RequestError(400, f"\"inputs\" has keys {sorted(columns)}; expected {names}.")
    return {n: _to_array(v, inputs[n], n) for n, v in columns.items()}, False


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


def predict(servable: Servable, body: dict) -> dict:
    """Runs a predict request body; returns the response body (`predictions` or `outputs`)."""
    import tensorflow as tf

    signature_name = body.get("signature_name") or DEFAULT_SIGNATURE
    if not isinstance(signature_name, str):
        raise RequestError(400, f"\"signature_name\" must be a string. Received: {signature_name!r}")
    fn = servable.signature(signature_name)
    arrays, rows = parse_predict(body, servable.inputs(signature_name))
    try:
        outputs = fn(**{n: tf.constant(a) for n, a in arrays.items()})
    except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError) as e:
        raise RequestError(400, f"Cannot run signature {signature_name!r} on this input: "
                                f"{_op_error_message(e)}") from None
    outputs = {n: t.numpy() for n, t in outputs.items()}
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


async def read_json(request: Request, max_bytes: int) -> dict:
    """The request body as a JSON object; 413 past `max_bytes`, 400 when it is not a JSON object."""
    # A body a little over the limit is read and dropped, so that a client still sending it can read
    # the 413; a far bigger one is refused at once and the connection closed.
    drain = DRAIN_FACTOR * max_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > drain:
        raise RequestError(413, f"Request body is {declared} bytes; the limit is {max_bytes} bytes.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= max_bytes:
            chunks.append(chunk)
        elif size > drain:
            break
    if size > max_bytes:
        raise RequestError(413, f"Request body is over the limit of {max_bytes} bytes.")
    try:
        body = json.loads(b"".join(chunks))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(400, f"Malformed JSON in the request body: {e}. Expected a JSON object such as "
                                "{\"instances\": [...]}.") from None
    if not isinstance(body, dict):
        raise RequestError(400, f"Request body must be a JSON object. Received a {type(body).__name__}.")
    return body


def create_app(base_path: str, model_name: str, *, max_body_bytes: int = MAX_BODY_BYTES,
               poll_seconds: float = 2.0) -> Starlette:
    """The Starlette app serving the model under `base_path` as `model_name`.

    Args:
        base_path: folder of integer-named SavedModel versions.
        model_name: the name in the URLs.
        max_body_bytes: larger request bodies get 413.
        poll_seconds: how often to look for a newer version (0: never).
    """
    store = ModelStore(base_path, model_name)

    async def models(request: Request) -> Response:
        m = PATH.match(request.path_params["rest"])
        if m is None:
            raise RequestError(404, f"Malformed request: {request.method} {request.url.path}. Expected "
                                    "/v1/models/<name>[/versions/<version>][/metadata|:predict].")
        servable = store.get(m["name"], m["version"])
        if request.method == "GET":
            if m["verb"]:
                raise RequestError(405, f"Use POST for :{m['verb']}.")
            return TFServingJSON(metadata(m["name"], servable) if m["metadata"] else status(servable))
        if m["verb"] != "predict":
            what = f":{m['verb']}" if m["verb"] else "this URL"
            raise RequestError(400 if m["verb"] in ("classify", "regress") else 404,
                               f"POST {what} is not supported. Expected POST .../{m['name']}:predict.")
        body = await read_json(request, max_body_bytes)
        return TFServingJSON(await run_in_threadpool(predict, servable, body))

    async def request_error(request, exc: RequestError):
        return TFServingJSON({"error": str(exc)}, status_code=exc.status)

    async def http_error(request, exc: HTTPException):
        return TFServingJSON({"error": f"{exc.detail}: {request.method} {request.url.path}"},
                            status_code=exc.status_code)

    async def disconnected(request, exc):
        return Response(status_code=400)

    async def internal_error(request, exc: Exception):
        log.exception("Internal error on %s %s", request.method, request.url.path)
        return TFServingJSON({"error": f"Internal error ({type(exc).__name__}); see the server log."},
                            status_code=500)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        stop = asyncio.Event()

        async def poll():
            while not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll_seconds)
                if not stop.is_set():
                    try:
                        await run_in_threadpool(store.refresh)
                    except Exception:  # a half-copied version: try again at the next poll
                        log.exception("Could not load a new version from %s", base_path)

        task = asyncio.create_task(poll()) if poll_seconds > 0 else None
        yield
        stop.set()
        if task:
            await task

    app = Starlette(
        routes=[Route("/v1/models/{rest:path}", models, methods=["GET", "POST"])],
        exception_handlers={RequestError: request_error, HTTPException: http_error,
                            ClientDisconnect: disconnected, Exception: internal_error},
        lifespan=lifespan,
    )
    app.state.store = store
    return app


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ssl_keras.serve",
                                description="Serve a SavedModel base directory with TF Serving's REST API.")
    p.add_argument("--model-base-path", default=os.path.join("export", "saved_model", "dog_breeds"),
                   help="folder of version folders 1, 2, ... (default: export/saved_model/dog_breeds)")
    p.add_argument("--model-name", default="dog_breeds", help="the model's name in URLs (default: dog_breeds)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8501, help="port (default: 8501, TF Serving's REST port)")
    p.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES,
                   help=f"larger request bodies get 413 (default: {MAX_BODY_BYTES})")
    p.add_argument("--poll-seconds", type=float, default=2.0,
                   help="how often to look for a newer version folder; 0: never (default: 2)")
    return p


def main(argv=None) -> int:
    import uvicorn

    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    if args.max_body_bytes < 1:
        print(f"error: --max-body-bytes must be >= 1. Received: {args.max_body_bytes}", file=sys.stderr)
        return 2
    try:
        app = create_app(args.model_base_path, args.model_name, max_body_bytes=args.max_body_bytes,
                         poll_seconds=args.poll_seconds)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    version = max(app.state.store.servables)
    print(f"Serving {args.model_name} version {version} from {args.model_base_path} at "
          f"http://{args.host}:{args.port}/v1/models/{args.model_name}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
