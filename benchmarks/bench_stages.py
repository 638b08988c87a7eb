"""Where a run's time goes, stage by stage, against the float32 matmul rate measured in the same run.

    python benchmarks/bench_stages.py --preset quick --runs results/gain_vs_budget/budget-40/seed*

Two tables:

1. **From finished runs** (`--runs`: run directories, or their kept copies, with the speed.json every run
   writes): each fit's samples/s (a sample: one photo forward and back; a forward pass alone counts 1/3,
   `ssl_keras.budget`), training FLOPs per sample (`ssl_keras.speed.model_flops`, the rotation model's
   backbone at the run's size), the achieved share of the matmul rate that run measured, and the share of
   the fit's time spent in BatchNorm re-estimation, validation and checkpoints (timed by `train.Checkpointer`);
   the rest is the training steps with their data and augmentation.
2. **Measured now**, for the steps of `baseline`, `pretext` and `fixmatch` on the real photos: seconds a step
   on one batch already in memory (the step alone), on the stage's own `tf.data` pipeline (decoded photos
   cached, augmentation and rotations in `tf.data`, sharing the two cores with the step), and the pipeline
   alone. The difference between the first two is what data and augmentation cost the step.

Writes `--out` (default `benchmarks/results/stages.md`).
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import statistics
import sys
import tempfile
import time

from common import machine, preset_config, write_table

from ssl_keras.files import read_json


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="quick")
    p.add_argument("--data-dir", default="../shared/data/dogs")
    p.add_argument("--runs", nargs="*", default=[], help="run directories (or kept copies) with a speed.json")
    p.add_argument("--steps", type=int, default=20, help="steps timed per measurement")
    p.add_argument("--out", default="benchmarks/results/stages.md")
    return p.parse_args(argv)


PARTS = ("batchnorm", "validation", "checkpoint")  # what `train.Checkpointer` times besides the steps


def runs_table(paths) -> list[str]:
    """Table 1: each fit of each run, from its speed.json."""
    lines = ["| run | fit | epochs | seconds | samples/s | MFLOP / sample | GFLOP/s | of matmul (GFLOP/s) | "
             "BatchNorm re-est. | validation | checkpoints | steps, data, augmentation |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for path in paths:
        sp = read_json(os.path.join(path, "speed.json"))
        peak = max(sp["matmul_gflops"].values())
        mflop = sp["train_mflop_per_sample"]
        for name, r in sp["fits"].items():
            spent = r.get("spent_s", {})
            share = {k: v / r["seconds"] for k, v in spent.items()}
            rest = 1 - sum(share.values())
            lines.append(
                f"| {os.path.relpath(path)} | {name} | {r['epochs'] or '-'} | {r['seconds']:.0f} | "
                f"{r['samples_per_s']:,.0f} | {mflop:.1f} | {r['samples_per_s'] * mflop / 1e3:.0f} | "
                f"**{r['samples_per_s'] * mflop / 1e3 / peak:.0%}** ({peak:.0f}) | "
                + " | ".join(f"{share[k]:.0%}" if k in share else "-" for k in PARTS)
                + f" | {rest:.0%} |")
    return lines


def stage_models(run, cfg):
    """(name, compiled model, its training dataset, samples a step) for baseline, pretext and fixmatch."""
    from ssl_keras import data, models, train
    from ssl_keras.methods import fixmatch

    d, n = cfg.data, len(run.classes)
    out = []
    baseline = models.build_classifier(cfg.model, d.image_size, n)
    train.compile_model(baseline, cfg.baseline, 100)
    out.append(("baseline", baseline, run.dataset("labelled", training=True, stage=cfg.baseline, repeat=True),
                d.batch_size, math.ceil(len(run.split["labelled"]) / d.batch_size)))
    rotation = models.build_rotation_model(cfg.model, d.image_size)
    train.compile_model(rotation, cfg.pretext, 100)
    keys = run.split["unlabelled"]
    out.append(("pretext", rotation, data.pretext_dataset(run.source, keys, d.image_size, d.batch_size,
                                                          training=True, stage=cfg.pretext, seed=0).repeat(),
                4 * d.batch_size, math.ceil(len(keys) / d.batch_size)))
    mc = cfg.fixmatch
    u = mc.ratio * d.batch_size
    # rows: the strong views that go through the classifier
    trainer, args, rows = fixmatch.build_trainer(models.build_classifier(cfg.model, d.image_size, n), cfg.model,
                                                 d.image_size, n, mc, u)
    train.compile_model(trainer, mc.train, 100, **{**args, "metrics": None})
    unlabelled = data.unlabelled_dataset(run.source, run.pool, d.image_size, u, seed=0)
    ds = fixmatch.dataset(run.dataset("labelled", training=True, stage=mc.train, repeat=True), unlabelled,
                          mc.strong_ops, mc.strong_factor, 0, rows)
    out.append(("fixmatch", trainer, ds, d.batch_size + rows + u / 3, math.ceil(len(run.pool) / u)))
    return out


def seconds_a_step(model, ds, steps: int) -> float:
    """The faster of 2 timed epochs of `steps` steps of `fit` on `ds`, after one untimed epoch."""
    import keras

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            if epoch > 0:
                self.times.append(time.perf_counter() - self.start)

    timer = Timer()
    timer.times = []
    model.fit(ds, epochs=3, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    return min(timer.times) / steps


def steps_table(args) -> list[str]:
    """Table 2: the step alone, on its pipeline, and the pipeline alone."""
    import tensorflow as tf

    from ssl_keras import config as config_lib, experiment, models, rundir, speed

    cfg = config_lib.override(preset_config(args.preset), {"data": {"data_dir": args.data_dir}})
    experiment.prepare(cfg)
    run = rundir.Run(cfg, tempfile.mkdtemp(prefix="bench_stages_"), verbose=0)
    peak = speed.run_matmul_gflops()
    lines = ["| stage | samples a step | step alone (ms) | step on its pipeline (ms) | data + augmentation's "
             "share of the step | pipeline alone (ms a batch, cached) | first epoch's decoding (s) | "
             "samples/s on its pipeline | of matmul |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    flops = speed.model_flops(models.build_rotation_model(cfg.model, cfg.data.image_size))["train"]
    for name, model, ds, samples, epoch_steps in stage_models(run, cfg):
        it = iter(ds)
        start = time.perf_counter()
        batch = next(it)  # the first: a full batch (an epoch's last may be partial)
        for _ in range(epoch_steps - 1):  # the rest of one epoch: decodes and caches every photo
            next(it)
        decode = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(args.steps):
            next(it)
        alone = (time.perf_counter() - start) / args.steps
        in_memory = seconds_a_step(model, tf.data.Dataset.from_tensors(batch).repeat(), args.steps)
        on_pipeline = seconds_a_step(model, ds, args.steps)
        rate = samples / on_pipeline
        print(f"{name}: step {1e3 * in_memory:.0f} ms alone, {1e3 * on_pipeline:.0f} ms on its pipeline", flush=True)
        lines.append(f"| {name} | {samples:.0f} | {1e3 * in_memory:.0f} | {1e3 * on_pipeline:.0f} | "
                     f"{max(0.0, 1 - in_memory / on_pipeline):.0%} | {1e3 * alone:.0f} | {decode:.1f} | "
                     f"{rate:,.0f} | {rate * flops / (peak * 1e9):.0%} |")
    peak_end = speed.run_matmul_gflops()
    lines += ["", f"Matmul (float32, 1024², chain of 8, best of 3): {peak:.0f} GFLOP/s at the start, {peak_end:.0f} "
              f"at the end; shares are of the start's. Training FLOPs per sample: {flops / 1e6:.1f} M (the rotation "
              "model; the classifier's head differs by < 1 %)."]
    return lines


def main(argv=None) -> int:
    args = parse(argv)
    from ssl_keras import quiet

    quiet.import_tensorflow()
    start = time.perf_counter()
    where = machine()
    paths = sorted(p for pattern in args.runs for p in glob.glob(pattern)
                   if os.path.exists(os.path.join(p, "speed.json")))
    lines = [f"# Where the time goes, per stage (preset `{args.preset}`)", ""]
    if paths:
        lines += ["## 1. Fits of finished runs (their speed.json)", ""] + runs_table(paths) + [""]
    lines += ["## 2. One training step, alone and on its pipeline (measured now)", ""] + steps_table(args)
    lines += ["", "Command: `python benchmarks/bench_stages.py " + " ".join(
        [f"--preset {args.preset}", f"--data-dir {args.data_dir}", f"--steps {args.steps}"]
        + ([f"--runs {' '.join(args.runs)}"] if args.runs else [])) + f"` ({time.perf_counter() - start:.0f} s)",
        f"Machine: {where}."]
    if paths:
        loads = [read_json(os.path.join(p, "speed.json")).get("load_average") for p in paths]
        loads = [x for x in loads if x is not None]
        if loads:
            lines.append(f"Runs of table 1: load average at their end {statistics.mean(loads):.1f} (mean).")
    write_table(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
