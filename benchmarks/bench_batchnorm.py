"""The fused BatchNormalization against Keras' own, and what saving with Keras' own layers costs.

    python benchmarks/bench_batchnorm.py                 # the quick preset's rotation model, ~1-2 minutes
    python benchmarks/bench_batchnorm.py --repeats 3

Runs of a training stage use `ssl_keras.models.BatchNormalization` (TensorFlow's fused
kernel); every `.keras` file is saved as a copy made of Keras' own layers
(`models.with_keras_layers`), so plain `keras.models.load_model` reads it. This measures,
in one process and interleaved so the machine's drift hits both alike:

- training samples/s of the rotation model with each BatchNormalization
  (`bench_compute.train_rate`: in-memory batches, so only the step is timed), as a
  share of the float32 matmul rate measured in the same run;
- the time of one `save_model` (copy, then save) against a plain `model.save` of the
  classifier, which a stage pays once per new best epoch and once at its end.

Writes `--out` (default `benchmarks/results/batchnorm.md`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from bench_compute import train_rate
from common import machine, preset_config, write_table

from ssl_keras.speed import matmul_flops

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def save_seconds(model, save, repeats: int = 5) -> float:
    """The median seconds of `save(model, path)` into a temporary folder."""
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats + 1):
            start = time.perf_counter()
            save(model, os.path.join(tmp, f"m{i}.keras"))
            if i:  # the first call warms up
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="quick")
    p.add_argument("--samples", type=int, default=768, help="rotated samples in each timed epoch (default 768)")
    p.add_argument("--repeats", type=int, default=2, help="interleaved runs of each BatchNormalization")
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "batchnorm.md"))
    args = p.parse_args(argv)
    from ssl_keras import quiet

    quiet.import_tensorflow()
    from ssl_keras import models, train

    cfg = preset_config(args.preset)
    size, photos = cfg.data.image_size, cfg.data.batch_size
    host = machine()
    print(host, flush=True)
    peak = matmul_flops()
    print(f"matmul 2048^2 float32: {peak / 1e9:.1f} GFLOP/s", flush=True)
    runs = {"fused": [], "keras": []}
    for _ in range(args.repeats):
        for name in runs:
            runs[name].append(train_rate(cfg.model, size, photos, args.samples, keras_bn=(name == "keras")))
            print(f"  {name:6s} {runs[name][-1]['samples_per_s']:7.0f} samples/s", flush=True)
    classifier = models.build_classifier(cfg.model, size, cfg.data.num_classes)
    saves = {"model.save (fused layers; needs ssl_keras to load)": save_seconds(classifier, lambda m, f: m.save(f)),
             "train.save_model (copy with Keras' layers, then save)": save_seconds(classifier, train.save_model)}
    peak = max(peak, matmul_flops())

    def median(results):
        return statistics.median(r["samples_per_s"] for r in results)

    flops = runs["fused"][0]["train_flops_per_sample"]
    lines = [f"Rotation model of preset `{args.preset}` at {size} px, batches of {4 * photos} rotated samples, "
             f"{flops / 1e6:.1f} MFLOP per training sample; float32 matmul {peak / 1e9:.1f} GFLOP/s "
             f"(the faster of the run's start and end).", "",
             "| BatchNormalization in training | samples/s (median of "
             f"{args.repeats}) | runs | share of matmul |", "|---|---:|---|---:|"]
    for name, label in (("keras", "Keras' own (`keras.layers.BatchNormalization`)"),
                        ("fused", "fused (`ssl_keras.models.BatchNormalization`)")):
        rate = median(runs[name])
        each = ", ".join(f"{r['samples_per_s']:.0f}" for r in runs[name])
        lines.append(f"| {label} | {rate:.0f} | {each} | "
                     f"{rate * flops / peak:.1%} |")
    lines += ["", f"Fused / Keras' own: {median(runs['fused']) / median(runs['keras']):.2f}x.", "",
              "| saving the classifier | seconds (median of 5) |", "|---|---:|"]
    lines += [f"| {label} | {seconds:.3f} |" for label, seconds in saves.items()]
    lines += ["", f"Machine: {host}."]
    write_table(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
