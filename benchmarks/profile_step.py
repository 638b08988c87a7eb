"""Where a training step's time goes: TensorFlow's profiler over a few steps, time per op type.

    python benchmarks/profile_step.py                          # the rotation model of `default`, batch 64 photos
    python benchmarks/profile_step.py --model classifier --batch-size 64
    python benchmarks/profile_step.py --set data.image_size=48 --policy mixed_bfloat16

Traces `--steps` steps of `fit` on synthetic batches already in memory (after warm-up
steps), reads the profiler's trace (`*.xplane.pb`) and sums the time of every op
event by op type (Conv2DBackpropFilter, FusedBatchNormGradV3, ...), per step. Ops run
on several threads at once, so the op times add up to more than the wall time; the
table gives each type's share of the summed op time. Writes `--out`
(default `benchmarks/results/profile_step.md`).
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import sys
import tempfile
import time

from common import machine, write_table

from ssl_keras import config as config_lib
from ssl_keras import presets


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="default", choices=sorted(presets.PRESETS))
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], help="a config value (repeatable)")
    p.add_argument("--model", choices=("rotation", "classifier"), default="rotation")
    p.add_argument("--batch-size", type=int, help="photos a batch (default: the preset's)")
    p.add_argument("--policy", default="float32", help="Keras dtype policy, e.g. mixed_bfloat16")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                 "profile_step.md"))
    return p.parse_args(argv)


def op_times(logdir: str) -> tuple[dict[str, float], int]:
    """{op type: total microseconds} over the trace's CPU op events, and the number of events."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    if not paths:
        raise SystemExit(f"error: the profiler wrote no trace under {logdir!r}.")
    space = xplane_pb2.XSpace()
    with open(paths[0], "rb") as f:
        space.ParseFromString(f.read())
    totals, n = collections.Counter(), 0
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if line.name in ("TraceMe", "Python", "python3"):
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "")
                if ":" not in name:  # op events are "node name:OpType"
                    continue
                totals[name.rsplit(":", 1)[1]] += event.duration_ps / 1e6
                n += 1
    return dict(totals), n


def main(argv=None) -> int:
    args = parse(argv)
    from ssl_keras import quiet

    tf = quiet.import_tensorflow()
    import keras
    import numpy as np

    from ssl_keras import models, train

    cfg = presets.preset(args.preset)
    for assignment in args.set:
        cfg = config_lib.override(cfg, config_lib.parse_assignment(assignment))
    keras.mixed_precision.set_global_policy(args.policy)
    size, photos = cfg.data.image_size, args.batch_size or cfg.data.batch_size
    if args.model == "rotation":
        model, batch, classes = models.build_rotation_model(cfg.model, size), 4 * photos, 4
    else:
        model, batch, classes = models.build_classifier(cfg.model, size, 10), photos, 10
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    y = rng.integers(0, classes, batch)
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    train.compile_model(model, cfg.pretext, 100)
    model.fit(ds, steps_per_epoch=5, epochs=1, verbose=0)  # build, trace and warm up
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=args.steps, epochs=1, verbose=0)
    wall = (time.perf_counter() - start) / args.steps
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        model.fit(ds, steps_per_epoch=args.steps, epochs=1, verbose=0)
        tf.profiler.experimental.stop()
        totals, events = op_times(logdir)
    summed = sum(totals.values())
    lines = [f"Preset `{args.preset}`, {args.model} model, {size} px, batch {batch} samples, policy {args.policy}, "
             f"{args.steps} traced steps ({events} op events).", "",
             f"Wall time a step, untraced: {1000 * wall:.1f} ms ({batch / wall:,.0f} samples/s); summed op time a "
             f"step: {summed / 1000 / args.steps:.1f} ms over {os.cpu_count()} cores.", "",
             "| op type | ms a step | share of op time |", "|---|---:|---:|"]
    for name, us in sorted(totals.items(), key=lambda kv: -kv[1])[:20]:
        lines.append(f"| {name} | {us / 1000 / args.steps:.2f} | {100 * us / summed:.1f}% |")
    command = " ".join(argv if argv is not None else sys.argv[1:])
    lines += ["", f"Command: `python benchmarks/profile_step.py {command}`",
              f"Machine: {machine()}."]
    write_table(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
