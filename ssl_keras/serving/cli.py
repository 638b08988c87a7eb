"""`python -m ssl_keras.serve`: a SavedModel base directory served like `tensorflow_model_server`.

It takes TF Serving's flags (`--port` is gRPC, `--rest_api_port` is REST, `--model_name`,
`--model_base_path`) and speaks both of its APIs over one model store: REST (`rest`) and gRPC
(`grpc_service`). Like TF Serving's default version policy, the newest version folder is served,
and the base directory is polled so that a new export is picked up. What a request may hold is
bounded by `core.Limits`, set here from the flags.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from ssl_keras.serving import rest
from ssl_keras.serving.core import GRPC_PORT, LIMITS, REST_PORT, Limits, ModelStore, keep_large_blocks_out_of_the_heap
from ssl_keras.serving.deadline import BODY_TIMEOUT_MS, HEADER_TIMEOUT_SECONDS


def build_parser() -> argparse.ArgumentParser:
    """tensorflow_model_server's flags (and hyphenated aliases), and the limits of `core.Limits`."""
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
    """Serves until SIGINT or SIGTERM; returns the exit status (2: bad flags, no model, a port in use)."""
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
        from ssl_keras.serving import grpc_service

        try:
            grpc_server = grpc_service.start(store, args.host, args.port, limits)
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

            app = rest.create_app(store=store, limits=limits, poll_seconds=0)
            uvicorn.Server(rest.uvicorn_config(app, args.host, args.rest_api_port,
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
