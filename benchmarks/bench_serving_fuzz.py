"""Fuzz and load on `python -m ssl_keras.serve`, over REST and gRPC, on loopback.

    python -m ssl_keras.run export --run-dir models/<run>        # writes export/
    python benchmarks/bench_serving_fuzz.py --export-dir export --data-dir ../shared/data/dogs

It starts the server in its own process (gRPC and REST ports, short read deadlines, a 4 MiB
body limit), sends a few hundred seeded malformed requests of each protocol (8 at a time, each on
a new connection), then runs 32 clients at once, each mixing good requests (real photos, answers checked against the
SavedModel called in this process) with bad ones. It prints a table (requests, 4xx or gRPC error
codes, 5xx or INTERNAL/UNKNOWN, wrong answers, requests/s, p50 and p99 latency) with the command
and the machine, and writes it to benchmarks/results/serving_fuzz.md.

The generators, clients and `Server` are tests/serving_fuzz.py's: tests/test_serving_cli_fuzz.py asserts
0 x 5xx, 0 x INTERNAL/UNKNOWN and 0 wrong answers with them; speed is measured only here.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ms(latencies, q) -> str:
    return f"{np.percentile(latencies, q) * 1000:.1f}" if latencies else "-"


def _codes(counter, keep) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items(), key=lambda kv: str(kv[0])) if keep(k)) or "0"


def table_rows(rest_fuzz, rest_load_stats, grpc_fuzz, grpc_load_stats, clients: int) -> list[str]:
    """The markdown table of one run."""
    rows = ["| protocol, phase | requests | 2xx / OK | 4xx (REST) or error codes (gRPC) | 5xx or INTERNAL/UNKNOWN "
            "| no answer | wrong answers | requests/s | p50 ms | p99 ms |", "|---|---|---|---|---|---|---|---|---|---|"]

    def rest_row(name, stats, wrong="-", rate="-"):
        s = stats["status"]
        client = lambda k: k is not None and 400 <= k < 500
        return (f"| {name} | {sum(s.values())} | {sum(v for k, v in s.items() if k and k < 300)} | "
                f"{sum(v for k, v in s.items() if client(k))} ({_codes(s, client)}) | "
                f"{sum(v for k, v in s.items() if k and k >= 500)} | {s.get(None, 0)} | {wrong} | {rate} | "
                f"{_ms(stats['latency'], 50)} | {_ms(stats['latency'], 99)} |")

    def grpc_row(name, stats, wrong="-", rate="-"):
        s = stats["status"]
        errors = _codes(s, lambda k: k not in ("OK", "INTERNAL", "UNKNOWN"))
        return (f"| {name} | {sum(s.values())} | {s.get('OK', 0)} | {errors} | "
                f"{s.get('INTERNAL', 0) + s.get('UNKNOWN', 0)} | - | {wrong} | {rate} | "
                f"{_ms(stats['latency'], 50)} | {_ms(stats['latency'], 99)} |")

    rows.append(rest_row("REST, fuzz (8 at a time)", rest_fuzz))
    rows.append(rest_row(f"REST, load ({clients} clients, 1/4 bad)", rest_load_stats, rest_load_stats["wrong"],
                         f"{rest_load_stats['requests_per_s']:.0f}"))
    rows.append(grpc_row("gRPC, fuzz (8 at a time)", grpc_fuzz))
    rows.append(grpc_row(f"gRPC, load ({clients} clients, 1/4 bad)", grpc_load_stats, grpc_load_stats["wrong"],
                         f"{grpc_load_stats['requests_per_s']:.0f}"))
    return rows


def pick_photos(data_dir: str, n: int) -> list[bytes]:
    """`n` photos (bytes), round-robin over the breed folders of `data_dir`."""
    folders = sorted(d for d in os.listdir(data_dir) if os.path.isdir(os.path.join(data_dir, d)))
    per = [sorted(os.path.join(data_dir, d, f) for f in os.listdir(os.path.join(data_dir, d))
                  if f.lower().endswith((".jpg", ".jpeg"))) for d in folders]
    per = [p for p in per if p]
    if not per:
        raise SystemExit(f"error: no photos under {data_dir!r}. Expected <data-dir>/<breed>/*.jpg.")
    paths = [per[i % len(per)][(i // len(per)) % len(per[i % len(per)])] for i in range(n)]
    out = []
    for path in paths:
        with open(path, "rb") as f:
            out.append(f.read())
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--export-dir", default="export", help="what `run export` wrote (default: export)")
    p.add_argument("--model-name", default="dog_breeds")
    p.add_argument("--data-dir", default=os.path.join(REPO, "..", "shared", "data", "dogs"))
    p.add_argument("--photos", type=int, default=60, help="real photos the load sends (default: 60)")
    p.add_argument("--fuzz-requests", type=int, default=400, help="malformed requests a protocol (default: 400)")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests-per-client", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "serving_fuzz.md"))
    args = p.parse_args(argv)
    from common import machine, write_table

    sys.path.insert(0, os.path.join(REPO, "tests"))  # the fuzz and load clients, shared with the tests
    from serving_fuzz import (SERVER_FLAGS, TOLERANCE, Server, grpc_fuzz_cases, grpc_load, rest_fuzz_cases, rest_load,
                              run_grpc_fuzz, run_rest_fuzz, saved_model_probabilities)

    from ssl_keras import quiet

    quiet.import_tensorflow()

    base_path = os.path.join(args.export_dir, "saved_model", args.model_name)
    photos = pick_photos(args.data_dir, args.photos)
    reference = saved_model_probabilities(base_path, photos)
    host = machine()
    with Server(base_path) as server:
        rest_fuzz = run_rest_fuzz(server.rest_port, rest_fuzz_cases(args.seed, args.fuzz_requests, photos[0]))
        grpc_fuzz = run_grpc_fuzz(server.grpc_target, grpc_fuzz_cases(args.seed, args.fuzz_requests, photos[0]))
        rest = rest_load(server.rest_port, photos, reference, args.clients, args.requests_per_client, args.seed)
        grpc_stats = grpc_load(server.grpc_target, photos, reference, args.clients, args.requests_per_client, args.seed)
        alive = server.alive() and server.rest_status() == 200
    load_after = os.getloadavg()
    command = "python benchmarks/bench_serving_fuzz.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"Command: `{command.strip()}`", "", f"Machine: {host}; load average {load_after[0]:.1f} at the end.", "",
             f"Server: `python -m ssl_keras.serve {' '.join(SERVER_FLAGS)}` (its own process, gRPC and REST), "
             f"model `{base_path}`; clients: Python threads in this process, on the same cores. The fuzz sends each "
             f"request on a new connection; the load's clients keep theirs. Good answers are compared with the "
             f"SavedModel called in this process (within {TOLERANCE:g}). Server up afterwards: {alive}.", ""]
    lines += table_rows(rest_fuzz, rest, grpc_fuzz, grpc_stats, args.clients)
    write_table(lines, args.out)
    bad = (sum(v for k, v in rest_fuzz["status"].items() if k and k >= 500) + rest["wrong"] + grpc_stats["wrong"]
           + sum(v for k, v in list(rest["status"].items()) if k and k >= 500)
           + sum(s["status"].get(c, 0) for s in (grpc_fuzz, grpc_stats) for c in ("INTERNAL", "UNKNOWN")))
    return 0 if alive and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
