"""TF Serving's REST API as a Starlette app, on the model store that the gRPC server shares.

    GET  /v1/models/<name>[/versions/<v>]            model status (HEAD: the same, no body)
    GET  /v1/models/<name>[/versions/<v>]/metadata   signatures
    POST /v1/models/<name>[/versions/<v>]:predict    {"instances": [...]} or {"inputs": ...}

Every client mistake gets a 4xx and `{"error": message}`, a message naming the input and what was
expected. Bodies are bounded by `Limits.max_body_bytes` (413 past it), and slow clients are cut off
by the deadlines of `deadline.TimedH11Protocol`, which `uvicorn_config` sets. Built on Starlette
(routing, requests) and uvicorn's h11 protocol (the HTTP server); TF Serving's counterpart is its
`http_rest_api_handler`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from ssl_keras.serving import json_tensor
from ssl_keras.serving.core import (LARGE_REQUEST_BYTES, LIMITS, REST_PORT, Limits, ModelStore, RequestError,
                                    Servable, log, release_memory, short)
from ssl_keras.serving.deadline import BODY_TIMEOUT_MS, HEADER_TIMEOUT_SECONDS, timed_protocol

DRAIN_FACTOR = 4
PATH = re.compile(r"(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                  r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?")


class TFServingJSON(Response):
    """JSON as TF Serving writes it: NaN and Infinity allowed (see its REST API's "JSON conformance")."""

    media_type = "application/json"

    def render(self, content) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode("utf-8")


def predict(servable: Servable, raw: bytes, limits: Limits = LIMITS) -> dict:
    """Runs a predict request body; returns the response body (`predictions` or `outputs`)."""
    signature_name, arrays, rows = json_tensor.parse_request(servable, raw, limits)
    return json_tensor.make_json(servable.run(signature_name, arrays), rows)


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
        raise RequestError(413, f"Request body is {short(declared)} bytes; the limit is {max_bytes} bytes.")
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
            raise RequestError(404, f"Malformed request: {request.method} {short(request.scope['path'])}. "
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
        return TFServingJSON({"error": f"{exc.detail}: {request.method} {short(request.scope['path'])}"},
                             status_code=exc.status_code, headers=exc.headers)

    async def disconnected(request, exc):
        return Response(status_code=400)

    async def internal_error(request, exc: Exception):
        log.exception("Internal error on %s %s", request.method, short(request.scope["path"]))
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


def uvicorn_config(app, host: str = "127.0.0.1", port: int = REST_PORT, *,
                   header_seconds: float = HEADER_TIMEOUT_SECONDS, body_seconds: float = BODY_TIMEOUT_MS / 1000):
    """The uvicorn config of the REST server: the timed h11 protocol, quiet logs."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, http=timed_protocol(header_seconds, body_seconds),
                          log_level="warning", lifespan="on")
