"""The forward passes besides the steps: validation, BatchNorm re-estimation and test scoring, eager against traced.

    python benchmarks/bench_validation.py --preset quick

`train.validate` (500 validation photos, the run's batch size) and `train.recalibrate_batchnorm`
(50 batches in training mode), each epoch, and `evaluate.predict_dataset` (the `evaluate` stage's
scoring of one classifier: 2,924 test photos, ImageWoof's, in batches of `rundir.EVAL_BATCH`) on the
classifier of the preset, at its image size, each timed two ways in the same run, interleaved: the
model called eagerly batch by batch (how the code ran before), and its call traced once into a graph
(`train.compiled_call`, how it runs now).
Pixels are random: the cost of a forward pass does not depend on them. Median of `--repeats`
calls after one untimed warm-up call each. Prints the float32 matmul rate measured in the same run.
Writes `--out` (default `benchmarks/results/validation.md`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from common import machine, preset_config, write_table


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="quick")
    p.add_argument("--image-size", type=int, default=None, help="default: the preset's")
    p.add_argument("--val-photos", type=int, default=500)
    p.add_argument("--test-photos", type=int, default=2924)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/validation.md")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    from ssl_keras import quiet

    quiet.import_tensorflow()
    import numpy as np
    import tensorflow as tf

    from ssl_keras import evaluate, models, rundir, speed, train

    cfg = preset_config(args.preset, args.image_size)
    size, b = cfg.data.image_size, cfg.data.batch_size
    matmul_start = speed.run_matmul_gflops()
    model = models.build_classifier(cfg.model, size, 10)
    rng = np.random.default_rng(0)
    val = tf.data.Dataset.from_tensor_slices(
        (rng.random((args.val_photos, size, size, 3), np.float32), rng.integers(0, 10, args.val_photos))).batch(b)
    photos = tf.data.Dataset.from_tensor_slices(rng.random((50 * b, size, size, 3), np.float32)).batch(b).cache()
    test = tf.data.Dataset.from_tensor_slices(
        (rng.random((args.test_photos, size, size, 3), np.float32), rng.integers(0, 10, args.test_photos))
    ).batch(max(b, rundir.EVAL_BATCH)).cache()

    def eager_validate():
        for x, y in val:
            np.asarray(model(x, training=False))

    def eager_recalibrate():
        for x in photos.take(50):
            model(x, training=True)

    def eager_score():
        for x, _ in test:
            np.asarray(model(x, training=False))

    scoring = "test scoring, once a classifier"
    work = {("validation", "eager"): eager_validate, ("validation", "traced"): lambda: train.validate(model, val),
            ("BatchNorm re-estimation", "eager"): eager_recalibrate,
            ("BatchNorm re-estimation", "traced"): lambda: train.recalibrate_batchnorm(model, photos),
            (scoring, "eager"): eager_score, (scoring, "traced"): lambda: evaluate.predict_dataset(model, test)}
    times = {k: [] for k in work}
    for f in work.values():
        f()  # warm-up: traces, fills the cache
    for _ in range(args.repeats):  # interleaved, so a busy moment hits both ways
        for k, f in work.items():
            start = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - start)
    matmul = max(matmul_start, speed.run_matmul_gflops())
    lines = [f"Preset `{args.preset}`: classifier at {size} px, batch {b}; validation: {args.val_photos} photos; "
             f"BatchNorm re-estimation: 50 batches; test scoring: {args.test_photos} photos. Seconds a call, median "
             f"of {args.repeats} (range).", "",
             "| work | eager (before) | traced (now) | speed-up |", "|---|---:|---:|---:|"]
    for what in ("validation", "BatchNorm re-estimation", scoring):
        e, t = times[(what, "eager")], times[(what, "traced")]
        when = "" if what == scoring else ", once an epoch"
        lines.append(f"| {what}{when} | {statistics.median(e):.3f} ({min(e):.3f}-{max(e):.3f}) | "
                     f"{statistics.median(t):.3f} ({min(t):.3f}-{max(t):.3f}) | "
                     f"{statistics.median(e) / statistics.median(t):.1f}x |")
    given = {"--image-size": (args.image_size, None), "--val-photos": (args.val_photos, 500),
             "--test-photos": (args.test_photos, 2924), "--repeats": (args.repeats, 5)}
    lines += ["", f"Command: `python benchmarks/bench_validation.py --preset {args.preset}"
              + "".join(f" {flag} {v}" for flag, (v, default) in given.items() if v != default) + "`",
              f"Machine: {machine()}; float32 matmul {matmul:.0f} GFLOP/s in the same run (`ssl_keras.speed`)."]
    write_table(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
