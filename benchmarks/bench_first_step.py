"""A fit's first step: traced once (the model's state made first, `train.build_state`) against twice (Keras' default);
a fit's first validation: traced once for any batch size against once a batch size.

    python benchmarks/bench_first_step.py --preset quick

Keras on TensorFlow makes a model's optimizer slots, metrics and loss trackers inside the first training step when
no distribution strategy is set; TensorFlow then traces the step a second time. For the preset's classifier, its
rotation model and its FixMatch trainer, each at the preset's batch, this times `fit` over one step on one batch
in memory (a fresh model each time: the trace, its graph's first run and the step), both ways, interleaved,
`--repeats` times, and the first validation (500 photos, a fresh classifier) with the call traced once a batch
size (as before) and once for any size (as now); prints the medians with the float32 matmul rate measured in the
same run. Writes `--out` (default `benchmarks/results/first_step.md`).
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
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/first_step.md")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    from ssl_keras import quiet

    quiet.import_tensorflow()
    import numpy as np
    import tensorflow as tf

    from ssl_keras import models, speed, train
    from ssl_keras.methods import fixmatch

    cfg = preset_config(args.preset)
    size, b, n = cfg.data.image_size, cfg.data.batch_size, 10
    rng = np.random.default_rng(0)

    def pixels(k):
        return rng.uniform(0, 255, (k, size, size, 3)).astype("float32")

    def classifier():
        model = models.build_classifier(cfg.model, size, n)
        train.compile_model(model, cfg.baseline, 1)
        return model, tf.data.Dataset.from_tensors((pixels(b), rng.integers(0, n, b))).repeat()

    def rotation():
        model = models.build_rotation_model(cfg.model, size)
        train.compile_model(model, cfg.pretext, 1)
        k = 4 * cfg.data.pretext_batch
        return model, tf.data.Dataset.from_tensors((pixels(k), rng.integers(0, 4, k))).repeat()

    def trainer():
        mc = cfg.fixmatch
        u = mc.ratio * b
        model, args, rows = fixmatch.build_trainer(models.build_classifier(cfg.model, size, n), cfg.model, size, n,
                                                   mc, u)
        train.compile_model(model, mc.train, 1, **args)
        x = {"labelled": pixels(b), "weak": pixels(u), "strong": pixels(u)}
        y = {"breed": rng.integers(0, n, b), "consistency": np.zeros(rows, "float32")}
        return model, tf.data.Dataset.from_tensors((x, y)).repeat()

    def first_fit(make, built: bool) -> float:
        model, data = make()
        if built:
            train.build_state(model, data)
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=1, epochs=1, verbose=0)
        return time.perf_counter() - start

    matmul_start = speed.run_matmul_gflops()
    rows = []
    for name, make in (("classifier (baseline, fine-tuning)", classifier), ("rotation model (pretext)", rotation),
                       ("FixMatch trainer", trainer)):
        times = {False: [], True: []}
        for _ in range(args.repeats):
            for built in (False, True):
                times[built].append(first_fit(make, built))
        twice, once = statistics.median(times[False]), statistics.median(times[True])
        rows.append(f"| first step of the {name} | {twice:.2f} | {once:.2f} | {twice - once:.2f} |")
    # A fit's first validation: 500 photos in batches of 256 and 244 (`rundir.EVAL_BATCH`), a fresh model each time.
    val = tf.data.Dataset.from_tensor_slices((pixels(500), rng.integers(0, n, 500))).batch(256)

    def first_validation(signature: bool) -> float:
        model = models.build_classifier(cfg.model, size, n)
        if not signature:  # how `train.compiled_call` traced before: once a batch shape (reduce_retracing)
            train._COMPILED[model] = {False: tf.function(lambda x: model(x, training=False), reduce_retracing=True)}
        start = time.perf_counter()
        train.validate(model, val)
        return time.perf_counter() - start

    times = {False: [], True: []}
    for _ in range(args.repeats):
        for signature in (False, True):
            times[signature].append(first_validation(signature))
    per_size, once = statistics.median(times[False]), statistics.median(times[True])
    rows.append(f"| a fit's first validation (500 photos, batches of 256 and 244): traced per batch size (before) "
                f"against once for any size (`train.compiled_call`) | {per_size:.2f} | {once:.2f} | "
                f"{per_size - once:.2f} |")
    matmul_end = speed.run_matmul_gflops()
    lines = [f"`python benchmarks/bench_first_step.py --preset {args.preset}`; {machine()}; float32 matmul "
             f"{matmul_start:.0f} GFLOP/s at the start, {matmul_end:.0f} at the end. `fit` over one step on one batch "
             f"in memory, a fresh model each time, median of {args.repeats} (interleaved):", "",
             "| what | before: traced twice, or once a batch size (s) | now: traced once (s) | saved (s) |",
             "|---|---:|---:|---:|", *rows]
    write_table(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
