"""Training FLOP/s of the rotation model as a fraction of what a plain float32 matmul reaches.

    python benchmarks/bench_compute.py                  # the default preset's model, ~4-5 minutes on 2 cores
    python benchmarks/bench_compute.py --preset quick

FLOPs: each Conv2D and Dense layer counts 2 x its multiply-accumulates (MACs) in the
forward pass, and a training step counts 3 x the forward pass (the backward pass
computes gradients for both the inputs and the weights, each about one forward pass).
Resize, BatchNorm, ReLU, pooling and the optimiser are left out: they are memory-bound
and small next to the convolutions. TensorFlow's own profiler
(`tf.compat.v1.profiler`, `float_operation`) counts the forward pass of the frozen
graph as a cross-check.

Achieved FLOP/s = training FLOPs per rotated sample x rotated samples/s of `fit`
(the faster of epochs 2 and 3, on synthetic batches already in memory, so only compute
is timed). The reference is a chain of 2048x2048 float32 matmuls (`ssl_keras.speed`) timed in
the same run, at its start and at its end; the faster of the two is the peak. Settings
tried, one at a time from the project's default ("before"): batch size, channel width,
XLA (`jit_compile`), `mixed_bfloat16`, `steps_per_execution` (steps Keras runs per call of its
compiled train function: less Python and host sync a step), and intra-/inter-op thread counts (these must be
set before TensorFlow starts, so each runs in a subprocess). "After" combines every
setting (but width, which changes the model) whose best value beat the project's
default in that sweep; then before and after run `--repeats` times each, interleaved,
and the table gives their medians, so that a gain is told from the machine's noise.
Writes `--out` (default `benchmarks/results/compute.md`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time

from common import machine, preset_config, write_table

from ssl_keras.speed import matmul_flops, model_flops

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def profiler_flops(model, image_size: int) -> int | None:
    """Forward FLOPs of one sample as TensorFlow's profiler counts them, or None if it cannot."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    try:
        fn = tf.function(lambda x: model(x, training=False))
        concrete = fn.get_concrete_function(tf.TensorSpec([1, image_size, image_size, 3], tf.float32))
        graph = convert_variables_to_constants_v2(concrete).graph
        opts = tf.compat.v1.profiler.ProfileOptionBuilder(
            tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()).with_empty_output().build()
        return int(tf.compat.v1.profiler.profile(graph=graph, options=opts).total_float_ops)
    except Exception as e:  # the v1 profiler is best-effort on TF2 graphs
        print(f"  (profiler cross-check failed: {type(e).__name__}: {e})", flush=True)
        return None


def train_rate(model_cfg, image_size: int, photos: int, samples: int, jit: bool = False,
               policy: str = "float32", keras_bn: bool = False, spe: int = 1) -> dict:
    """Rotated samples/s of `fit` (the faster of epochs 2 and 3) on in-memory synthetic batches.

    Each batch is 4 * `photos` rotated samples, as the pretext stage feeds the model. With
    `keras_bn` the model is built with Keras' own (unfused) BatchNormalization, as before
    `ssl_keras.models.BatchNormalization` used TensorFlow's fused kernel.
    """
    import keras
    import tensorflow as tf

    from ssl_keras import config as config_lib
    from ssl_keras import models, train

    class Timer(keras.callbacks.Callback):  # keeps the fastest epoch after the first (tracing) one
        seconds = float("inf")

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            if epoch > 0:
                self.seconds = min(self.seconds, time.perf_counter() - self.start)

    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        batch = 4 * photos
        x = tf.random.uniform((batch, image_size, image_size, 3), 0, 255, seed=0)
        y = tf.random.uniform((batch,), 0, 4, tf.int32, seed=0)
        ds = tf.data.Dataset.from_tensors((x, y)).repeat()
        steps = max(3, math.ceil(samples / batch))
        fused = models.BatchNormalization
        models.BatchNormalization = keras.layers.BatchNormalization if keras_bn else fused
        try:
            model = models.build_rotation_model(model_cfg, image_size)
        finally:
            models.BatchNormalization = fused
        train.compile_model(model, config_lib.StageConfig(epochs=2), steps)
        model.jit_compile = jit
        model.steps_per_execution = spe
        timer = Timer()
        model.fit(ds, epochs=3, steps_per_epoch=steps, callbacks=[timer], verbose=0, shuffle=False)
        flops = model_flops(model)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    rate = steps * batch / timer.seconds
    return {"samples_per_s": rate, "train_flops_per_sample": flops["train"], "flops_per_s": rate * flops["train"]}


def _child(args) -> int:
    """Runs one measurement with the thread counts set before TensorFlow starts; prints JSON."""
    import tensorflow as tf

    intra, inter = args.child_threads
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    cfg = preset_config(args.preset, args.image_size)
    result = train_rate(cfg.model, cfg.data.image_size, args.child_photos, args.samples,
                        jit=args.child_jit, policy=args.child_policy, keras_bn=args.child_keras_bn,
                        spe=args.child_spe)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def _in_subprocess(args, threads, photos, jit=False, policy="float32", keras_bn=False, spe=1) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--preset", args.preset, "--samples", str(args.samples),
           "--image-size", str(args.image_size),
           "--child-threads", str(threads[0]), str(threads[1]), "--child-photos", str(photos),
           "--child-policy", policy, "--child-spe", str(spe)]
    cmd += (["--child-jit"] if jit else []) + (["--child-keras-bn"] if keras_bn else [])
    env = dict(os.environ)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        raise RuntimeError(f"thread setting {threads} failed:\n{proc.stderr[-2000:]}")
    return json.loads(line[len("RESULT "):])


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="default", help="config preset whose model and batch are 'before'")
    p.add_argument("--image-size", type=int, help="pixels a side (default: the preset's)")
    p.add_argument("--samples", type=int, default=768, help="rotated samples in each timed epoch (default 768)")
    p.add_argument("--batches", type=int, nargs="+", default=[16, 32, 128], help="photos per batch to try")
    p.add_argument("--widths", type=float, nargs="+", default=[0.5, 2.0], help="channel multipliers to try")
    p.add_argument("--threads", default="1,1;2,1", help="intra,inter thread pairs to try, ';'-separated "
                   "(TensorFlow's default is one thread per core for both)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved runs of before and after (default 3)")
    p.add_argument("--skip-jit", action="store_true", help="do not try jit_compile (XLA)")
    p.add_argument("--steps-per-execution", type=int, nargs="*", default=[4, 16], help="values to try")
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "compute.md"))
    p.add_argument("--child-threads", type=int, nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--child-photos", type=int, help=argparse.SUPPRESS)
    p.add_argument("--child-policy", default="float32", help=argparse.SUPPRESS)
    p.add_argument("--child-jit", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child-spe", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--child-keras-bn", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    from ssl_keras import quiet

    quiet.import_tensorflow()
    if args.child_threads:
        return _child(args)
    from ssl_keras import models

    started = time.time()
    cfg = preset_config(args.preset, args.image_size)
    args.image_size = cfg.data.image_size  # the children measure the same size
    size, photos, base_model = cfg.data.image_size, cfg.data.batch_size, cfg.model
    host = machine()
    print(host, flush=True)

    probe = models.build_rotation_model(base_model, size)
    counted = model_flops(probe)
    profiled = profiler_flops(probe, size)
    peak = matmul_flops()
    peak_bf16 = matmul_flops(dtype="bfloat16")
    print(f"matmul 2048^2 float32: {peak / 1e9:.1f} GFLOP/s; bfloat16: {peak_bf16 / 1e9:.1f} GFLOP/s", flush=True)
    print(f"forward FLOPs/sample: {counted['forward'] / 1e6:.1f} M counted, "
          f"{'-' if profiled is None else f'{profiled / 1e6:.1f} M'} by the TF profiler", flush=True)

    rows = []  # (setting, group, result, the value tried)

    def record(setting, group, result, value=None):
        rows.append((setting, group, result, value))
        print(f"  {setting:45s} {result['samples_per_s']:8.0f} samples/s  "
              f"{result['flops_per_s'] / 1e9:6.2f} GFLOP/s  {result['flops_per_s'] / peak:6.1%} of matmul",
              flush=True)

    # "Before" is the project as it trains: TensorFlow's fused batch norm (`models.BatchNormalization`).
    before_desc = (f"preset `{args.preset}` as it trains (fused batch norm, batch {photos} photos, float32, no XLA, "
                   "default threads)")
    record(before_desc, "before", train_rate(base_model, size, photos, args.samples))
    record("Keras' own BatchNormalization (unfused)", "bn",
           train_rate(base_model, size, photos, args.samples, keras_bn=True), True)
    for b in args.batches:
        record(f"batch {b} photos ({4 * b} samples)", "batch", train_rate(base_model, size, b, args.samples), b)
    for w in args.widths:
        filters = tuple(max(1, round(f * w)) for f in base_model.filters)
        wide = dataclasses.replace(base_model, filters=filters, dense_units=max(1, round(base_model.dense_units * w)))
        record(f"channels ×{w:g}: filters {list(filters)}", "width", train_rate(wide, size, photos, args.samples))
    if not args.skip_jit:
        record("jit_compile=True (XLA)", "jit", train_rate(base_model, size, photos, args.samples, jit=True), True)
    for n in args.steps_per_execution:
        record(f"steps_per_execution={n}", "spe", train_rate(base_model, size, photos, args.samples, spe=n), n)
    record("mixed_bfloat16 policy", "policy",
           train_rate(base_model, size, photos, args.samples, policy="mixed_bfloat16"), True)
    thread_pairs = [tuple(int(v) for v in pair.split(",")) for pair in args.threads.split(";") if pair]
    for intra, inter in thread_pairs:
        record(f"threads intra={intra}, inter={inter} (subprocess)", "threads",
               _in_subprocess(args, (intra, inter), photos), (intra, inter))

    # The candidate: every setting (but width) whose best value beat the first measurement, together.
    first = rows[0][2]["flops_per_s"]

    def gain(group):
        candidates = [r for r in rows if r[1] == group and r[2]["flops_per_s"] > first]
        return max(candidates, key=lambda r: r[2]["flops_per_s"])[3] if candidates else None

    best_batch = gain("batch") or photos
    use_jit, use_bf16, threads = bool(gain("jit")), bool(gain("policy")), gain("threads")
    fused = not gain("bn")
    policy = "mixed_bfloat16" if use_bf16 else "float32"
    spe = gain("spe") or 1
    after_desc = (f"{'fused' if fused else 'Keras'} batch norm, batch {best_batch} photos, {policy}, "
                  f"{'XLA' if use_jit else 'no XLA'}, steps_per_execution={spe}, "
                  f"{'threads intra=%d, inter=%d' % threads if threads else 'default threads'}")

    def candidate():
        if threads:
            return _in_subprocess(args, threads, best_batch, jit=use_jit, policy=policy, keras_bn=not fused, spe=spe)
        return train_rate(base_model, size, best_batch, args.samples, jit=use_jit, policy=policy, keras_bn=not fused,
                          spe=spe)

    # Before against after, interleaved, `--repeats` times each: the machine's drift hits both alike.
    runs = {"before": [], "after": []}
    for _ in range(args.repeats):
        runs["before"].append(train_rate(base_model, size, photos, args.samples))
        runs["after"].append(candidate())
        print(f"  A/B: before {runs['before'][-1]['samples_per_s']:.0f}, "
              f"after {runs['after'][-1]['samples_per_s']:.0f} samples/s", flush=True)

    def median(results):
        return sorted(results, key=lambda r: r["flops_per_s"])[len(results) // 2]

    before, after = median(runs["before"]), median(runs["after"])
    spread = {k: (min(r["flops_per_s"] for r in v), max(r["flops_per_s"] for r in v)) for k, v in runs.items()}
    record(f"before: {before_desc}, median of {args.repeats}", "ab", before)
    record(f"after: {after_desc}, median of {args.repeats}", "ab", after)
    peak_end = matmul_flops()
    print(f"matmul at the end: {peak_end / 1e9:.1f} GFLOP/s", flush=True)
    ref = max(peak, peak_end)

    lines = [
        f"Rotation model of preset `{args.preset}` at {size} px: {counted['forward'] / 1e6:.1f} MFLOP forward per "
        f"sample (2 × MACs of its {len(counted['macs'])} Conv2D/Dense layers; TF's profiler counts "
        f"{'-' if profiled is None else f'{profiled / 1e6:.1f}'} MFLOP for the whole frozen forward graph), "
        f"**{counted['train'] / 1e6:.1f} MFLOP per training sample** (3 × forward).",
        f"Reference: a chain of 8 matmuls 2048×2048 float32 (`ssl_keras.speed`), best of 3: {peak / 1e9:.1f} GFLOP/s "
        "at the start, "
        f"{peak_end / 1e9:.1f} GFLOP/s at the end (bfloat16: {peak_bf16 / 1e9:.1f} GFLOP/s). Percentages are of the "
        f"faster float32 figure, {ref / 1e9:.1f} GFLOP/s.",
        "",
        "| setting | rotated samples/s | MFLOP / sample | achieved GFLOP/s | of float32 matmul |",
        "|---|---:|---:|---:|---:|",
    ]
    for setting, _, r, _ in rows:
        bold = "**" if setting.startswith(("before:", "after:")) else ""
        lines.append(f"| {bold}{setting}{bold} | {r['samples_per_s']:,.0f} | {r['train_flops_per_sample'] / 1e6:.1f} "
                     f"| {r['flops_per_s'] / 1e9:.2f} | {bold}{r['flops_per_s'] / ref:.1%}{bold} |")
    lines += [
        "",
        f"Before → after, {args.repeats} interleaved runs each, median (range): "
        f"{before['flops_per_s'] / ref:.1%} ({spread['before'][0] / ref:.0%}-{spread['before'][1] / ref:.0%}) → "
        f"{after['flops_per_s'] / ref:.1%} ({spread['after'][0] / ref:.0%}-{spread['after'][1] / ref:.0%}) of the "
        f"matmul figure, {after['flops_per_s'] / before['flops_per_s']:.2f}× the FLOP/s. \"After\" takes every "
        "setting whose best value beat the first row of the sweep; the interleaved runs then say whether the "
        "combination is a real gain or the sweep's noise. Channel widths change the model, "
        "so they are reported, not adopted. Data format: TensorFlow's CPU convolutions are NHWC "
        "(channels_last, the project's layout), so channels_first is not tried here.",
        "",
        f"Command: `python benchmarks/bench_compute.py --preset {args.preset} --image-size {size} "
        f"--samples {args.samples}` "
        f"({time.time() - started:.0f} s)",
        f"Machine: {host}.",
    ]
    write_table(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
