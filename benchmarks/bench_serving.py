"""Serving benchmark of an export: SavedModel latency, REST throughput, TF.js in the browser, export sizes.

    python -m ssl_keras.run export --run-dir models/<run>        # writes export/
    python benchmarks/bench_serving.py --export-dir export --data-dir ../shared/data/dogs

Prints the tables and writes them, with the command and the machine, to
benchmarks/results/serving.md. Every client runs on this machine against
127.0.0.1, in loops bounded by count and time; the REST server is
`python -m ssl_keras.serve`, started (and stopped) here in its own process.
"""

import argparse
import base64
import concurrent.futures
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

from common import machine

from ssl_keras import quiet

quiet.import_tensorflow()
from ssl_keras import export, preprocessing  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def pick_photos(data_dir, classes, n):
    """`n` photo paths, round-robin over the model's breed folders."""
    per_class = [sorted(os.path.join(data_dir, c, f) for f in os.listdir(os.path.join(data_dir, c))
                        if f.lower().endswith((".jpg", ".jpeg")))
                 for c in classes if os.path.isdir(os.path.join(data_dir, c))]
    if not per_class:
        raise SystemExit(f"error: no photos of {classes} under {data_dir!r}. Expected <data-dir>/<breed>/*.jpg.")
    return [per_class[i % len(per_class)][i // len(per_class)] for i in range(n)]


def ms(seconds):
    return [s * 1000 for s in seconds]


def percentile(values, q):
    return float(np.percentile(values, q)) if values else float("nan")


def timed(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def load(make_call, clients, seconds, max_requests):
    """Runs `clients` threads, each calling its own `make_call()` until time or count runs out.

    Returns (requests per second, latencies in seconds).
    """
    latencies, lock, stop = [], threading.Lock(), time.perf_counter() + seconds

    def worker():
        call = make_call()
        while time.perf_counter() < stop:
            with lock:
                if len(latencies) >= max_requests:
                    return
            start = time.perf_counter()
            call()
            with lock:
                latencies.append(time.perf_counter() - start)

    begin = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(worker) for _ in range(clients)]:
            f.result()
    return len(latencies) / (time.perf_counter() - begin), latencies


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(base_path, name, port):
    proc = subprocess.Popen([sys.executable, "-m", "ssl_keras.serve", "--model_base_path", base_path,
                             "--model_name", name, "--port", "0", "--rest_api_port", str(port),
                             "--file_system_poll_wait_seconds", "0"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"error: the server exited:\n{proc.stderr.read()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", f"/v1/models/{name}")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("error: the server did not answer within 120 s")


def browser_ms(web_dir, photos, backend):
    """Mean and p50 milliseconds a photo as the page reports them, or None without Playwright/Chromium."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not os.path.exists(chromium):
        return None
    import functools
    import http.server

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=web_dir))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    times, used = [], backend
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page()
            query = f"?backend={backend}" if backend else ""
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/{query}")
            page.wait_for_function("['ready', 'error'].includes(document.body.dataset.state)", timeout=60_000)
            for path in photos:
                page.evaluate("document.body.dataset.state = 'bench'")
                page.set_input_files("input[type=file]", path)
                page.wait_for_function("['done', 'error'].includes(document.body.dataset.state)", timeout=60_000)
                m = re.search(r"took ([\d.]+) ms \((\w+) backend", page.inner_text("#timing"))
                times.append(float(m.group(1)))
                used = m.group(2)
            browser.close()
    finally:
        server.shutdown()
    return used, statistics.mean(times[1:]), percentile(times[1:], 50)


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--export-dir", default="export", help="what `python -m ssl_keras.run export` wrote")
    p.add_argument("--model-name", default="dog_breeds")
    p.add_argument("--data-dir", default=os.path.join("..", "shared", "data", "dogs"), help="photos to send")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8], help="concurrent clients (max 16)")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each load run (max 60)")
    p.add_argument("--max-requests", type=int, default=3000, help="cap on requests of each load run")
    p.add_argument("--browser-photos", type=int, default=30)
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "serving.md"))
    args = p.parse_args(argv)
    if max(args.clients) > 16 or args.seconds > 60:
        raise SystemExit("error: at most 16 clients and 60 s a run (this is a loopback benchmark).")

    import tensorflow as tf

    info_path = os.path.join(args.export_dir, "export.json")
    if not os.path.exists(info_path):
        raise SystemExit(f"error: {info_path!r} not found. Run `python -m ssl_keras.run export` first.")
    with open(info_path) as f:
        info = json.load(f)
    base_path = os.path.join(args.export_dir, "saved_model", args.model_name)
    version_dir = os.path.join(base_path, str(export.next_version(base_path) - 1))
    photos = pick_photos(args.data_dir, info["classes"], 64)
    encoded = [open(path, "rb").read() for path in photos]
    print(f"Machine: {machine()}\nModel: {version_dir} ({len(info['classes'])} classes)\n", flush=True)

    # 1. The SavedModel, called in this process.
    loaded = tf.saved_model.load(version_dir)
    by_bytes, by_pixels = loaded.signatures["serving_default"], loaded.signatures["predict_pixels"]
    size = json.load(open(os.path.join(args.export_dir, "tfjs", "model.json")))["userDefinedMetadata"]["image_size"]
    pixels = export.decode_batch(tf.constant(encoded[:32]), preprocessing.resizing(size))
    rows = []
    for label, fn in (("`serving_default` (JPEG bytes)", lambda b: by_bytes(image_bytes=tf.constant(encoded[:b]))),
                      (f"`predict_pixels` ({size}x{size} float)", lambda b: by_pixels(pixels=pixels[:b]))):
        for batch, repeats in ((1, 100), (32, 20)):
            t = ms(timed(lambda: fn(batch), repeats))
            rows.append((f"SavedModel {label}", f"batch {batch}", f"{percentile(t, 50):.2f}",
                         f"{percentile(t, 99):.2f}", f"{batch * 1000 / statistics.median(t):.0f}"))
            print(rows[-1], flush=True)
    direct_table = table(("what", "batch", "p50 ms", "p99 ms", "images/s"), rows)

    # 2. REST against the same SavedModel called directly, with concurrent clients.
    bodies = [json.dumps({"instances": [{"b64": base64.b64encode(e).decode()}]}).encode() for e in encoded]
    port = free_port()
    server = start_server(base_path, args.model_name, port)
    rows = []
    try:
        for clients in args.clients:
            def direct_client():
                i = iter(range(10**9))
                return lambda: by_bytes(image_bytes=tf.constant([encoded[next(i) % len(encoded)]]))

            def rest_client():
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                i = iter(range(10**9))

                def call():
                    conn.request("POST", f"/v1/models/{args.model_name}:predict",
                                 body=bodies[next(i) % len(bodies)], headers={"Content-Type": "application/json"})
                    response = conn.getresponse()
                    response.read()
                    if response.status != 200:
                        raise SystemExit(f"error: the server answered {response.status}")
                return call

            for label, make in (("SavedModel, called directly", direct_client), ("REST `:predict`", rest_client)):
                rate, lat = load(make, clients, args.seconds, args.max_requests)
                rows.append((label, clients, f"{rate:.0f}", f"{percentile(ms(lat), 50):.2f}",
                             f"{percentile(ms(lat), 99):.2f}"))
                print(rows[-1], flush=True)
    finally:
        server.terminate()
        server.wait(30)
    rest_table = table(("1 JPEG a request", "clients", "requests/s", "p50 ms", "p99 ms"), rows)

    # 3. TF.js: in the page (headless Chromium) and in Node.
    rows = []
    for backend in ("cpu", None):
        result = browser_ms(os.path.join(args.export_dir, "web"), photos[:args.browser_photos + 1], backend)
        if result is None:
            rows.append(("TF.js in Chromium", "-", "skipped: no Playwright or Chromium", "-"))
            break
        used, mean, p50 = result
        rows.append((f"TF.js in headless Chromium, the page (`{used}` backend)", "1", f"{mean:.1f}", f"{p50:.1f}"))
        print(rows[-1], flush=True)
    decoded = [tf.io.decode_image(e, channels=3, expand_animations=False).numpy().astype("float32")
               for e in encoded[:args.browser_photos]]
    _, node_ms = export.tfjs_predict(os.path.join(args.export_dir, "tfjs"), decoded)
    rows.append(("TF.js in Node (pure-JS `cpu` backend)", "1", f"{node_ms:.1f}", "-"))
    tfjs_table = table(("TF.js", "photos a call", "mean ms a photo", "p50 ms"), rows)

    # 4. Sizes, and what float16 weights cost.
    b = {k: export.dir_size(v) for k, v in (("saved_model", version_dir),
                                            ("tfjs", os.path.join(args.export_dir, "tfjs")),
                                            ("tfjs_float16", os.path.join(args.export_dir, "tfjs_float16")))}
    rows = [("SavedModel (one version folder)", f"{b['saved_model'] / 1e6:.2f} MB"),
            ("TF.js graph model, float32 weights", f"{b['tfjs'] / 1e6:.2f} MB"),
            ("TF.js graph model, float16 weights", f"{b['tfjs_float16'] / 1e6:.2f} MB "
                                                   f"({100 * (1 - b['tfjs_float16'] / b['tfjs']):.0f}% smaller)")]
    if "test" in info:
        t = info["test"]
        rows.append((f"float16: test accuracy on {t['photos']} photos",
                     f"{t['accuracy']['tfjs']:.4f} -> {t['accuracy']['tfjs_float16']:.4f} "
                     f"({t['float16_accuracy_change']:+.4f}); max probability change "
                     f"{t['float16_max_abs_probability_change']:.1e}"))
    size_table = table(("export", "size"), rows)

    report = "\n\n".join([
        "# Serving benchmark",
        f"Command: `python benchmarks/bench_serving.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        f"Machine: {machine()}. Date: {time.strftime('%Y-%m-%d')}.",
        f"Model: `{version_dir}`, {len(info['classes'])} classes, {size}x{size} px input; photos from "
        f"`{args.data_dir}` (real JPEGs, about 200x150 px).",
        "## SavedModel, in-process\n\n" + direct_table,
        f"## REST on 127.0.0.1 against the SavedModel called directly ({args.seconds:.0f} s a row)\n\n"
        "Server: `python -m ssl_keras.serve` (Starlette + uvicorn, one process); clients: Python threads with "
        "keep-alive connections, on the same cores.\n\n" + rest_table,
        "## TF.js\n\n" + tfjs_table,
        "## Export sizes\n\n" + size_table,
    ]) + "\n"
    print("\n" + report)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(report)
    print(f"Written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
