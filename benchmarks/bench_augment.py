"""FixMatch's strong augmentation in `tf.data`: its groups written out one by one (before) against one loop (now).

    python benchmarks/bench_augment.py --preset quick

`data.strong_augmenter` draws RandAugment's operations for each of 8 groups of a batch.
Before, the graph wrote the 8 groups out (each holding every operation: 8 x `strong_ops`
x 10 layer calls to trace); now a `tf.while_loop` holds them once. Both ways are built
here from the same layers and seeds (the "before" one is copied below), in the same run:
the seconds to build the pipeline and give its first batch (tracing), the milliseconds a
batch after that (median of `--batches`, one map call at a time), and whether the two give
the same photos. The batch is FixMatch's unlabelled one (`ratio` x batch size photos of
random pixels at the preset's size). Prints the float32 matmul rate measured in the same
run. Writes `--out`.
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
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--out", default="benchmarks/results/augment.md")
    return p.parse_args(argv)


def written_out(augment_now, groups: int = 8):
    """The augmentation as it was: the same layers (taken from `augment_now`'s closure), each group written out."""
    import tensorflow as tf

    cells = dict(zip(augment_now.__code__.co_freevars, (c.cell_contents for c in augment_now.__closure__)))
    one_group, flip, shift, cutout = cells["one_group"], cells["flip"], cells["shift"], cells["cutout"]

    def augment(x, training=True):
        x = shift(flip(x, training=True), training=True)
        bounds = tf.cast(tf.round(tf.linspace(0.0, tf.cast(tf.shape(x)[0], tf.float32), groups + 1)), tf.int32)
        x = tf.concat([one_group(x[bounds[g]:bounds[g + 1]]) for g in range(groups)], axis=0)
        return cutout(x, training=True)

    return augment


def main(argv=None) -> int:
    args = parse(argv)
    from ssl_keras import quiet

    quiet.import_tensorflow()
    import numpy as np
    import tensorflow as tf

    from ssl_keras import data, speed

    cfg = preset_config(args.preset)
    mc, size = cfg.fixmatch, cfg.data.image_size
    n = mc.ratio * cfg.data.batch_size
    matmul = [speed.run_matmul_gflops()]
    x = np.random.default_rng(0).uniform(0, 255, (n, size, size, 3)).astype("float32")
    ways = {"groups written out (before)": lambda: written_out(data.strong_augmenter(mc.strong_ops, mc.strong_factor, 0)),
            "one loop over the groups (now)": lambda: data.strong_augmenter(mc.strong_ops, mc.strong_factor, 0)}
    rows, outputs = [], []
    for way, make in ways.items():
        start = time.perf_counter()
        aug = make()
        it = iter(tf.data.Dataset.from_tensors(x).repeat().map(lambda u: aug(u, training=True)))
        outputs.append([next(it).numpy()])
        build = time.perf_counter() - start
        seconds = []
        for _ in range(args.batches):
            start = time.perf_counter()
            outputs[-1].append(next(it).numpy())
            seconds.append(time.perf_counter() - start)
        rows.append(f"| {way} | {build:.1f} | {1000 * statistics.median(seconds):.0f} "
                    f"({1000 * min(seconds):.0f}-{1000 * max(seconds):.0f}) |")
    matmul.append(speed.run_matmul_gflops())
    same = all(np.array_equal(a, b) for a, b in zip(*outputs))
    lines = [f"Preset `{args.preset}`: FixMatch's unlabelled batch, {n} photos of {size} px, {mc.strong_ops} "
             f"operations at strength {mc.strong_factor}, 8 groups; {args.batches} batches after the first.", "",
             "| strong augmentation | build + first batch (s) | a batch after (ms, median and range) |",
             "|---|---:|---:|", *rows, "",
             f"The same photos both ways, all {args.batches + 1} batches: {'yes' if same else 'NO'}.", "",
             f"Command: `python benchmarks/bench_augment.py --preset {args.preset} --batches {args.batches}`",
             f"Machine: {machine()}; float32 matmul {matmul[0]:.0f} GFLOP/s at the start, {matmul[1]:.0f} at the end "
             "(`ssl_keras.speed`)."]
    write_table(lines, args.out)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
