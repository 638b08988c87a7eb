"""A labelled stage with the resume state committed after every epoch (before) and every 30 s (now).

    python benchmarks/bench_checkpoint.py --preset quick

The preset's baseline stage, as `python -m ssl_keras.run` trains it (the real photos, its
split, augmentation, validation each epoch, `best.keras` at each new best), run `--repeats`
times each way in the same process, interleaved so a busy moment hits both: with
`train.COMMIT_SECONDS = 0` (the weights and `best.keras` written after every epoch, how the
code ran before) and at the project's `train.COMMIT_SECONDS`. Reports the fit's seconds
(median and range), the seconds its checkpoints took (`Checkpointer.spent`) and the
validation accuracy of the kept epoch (the same training either way; runs are not
bit-repeatable). Prints the float32 matmul rate measured in the same run. Writes `--out`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

from common import machine, preset_config, write_table


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="quick")
    p.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "dogs"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/checkpoint.md")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    from ssl_keras import quiet

    quiet.import_tensorflow()
    from ssl_keras import config as config_lib
    from ssl_keras import experiment, files, rundir, speed, train

    cfg = config_lib.override(preset_config(args.preset), {"data": {"data_dir": os.path.abspath(args.data_dir)}})
    experiment.prepare(cfg)
    ways = {"every epoch (before)": 0.0, f"every {train.COMMIT_SECONDS:.0f} s (now)": train.COMMIT_SECONDS}
    out = {w: {"seconds": [], "checkpoint": [], "val": []} for w in ways}
    matmul = [speed.run_matmul_gflops()]
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for way, seconds in ways.items():
                train.COMMIT_SECONDS = seconds
                run = rundir.Run(cfg, os.path.join(tmp, f"{i}-{seconds}"), verbose=0, log=lambda *a: None)
                experiment.run_stages(run, ("baseline",))
                fit = files.read_json(run.path("speed.json"))["fits"]["baseline"]
                out[way]["seconds"].append(fit["seconds"])
                out[way]["checkpoint"].append(fit["spent_s"]["checkpoint"])
                out[way]["val"].append(run.stage_info("baseline")["best_val_accuracy"])
    matmul.append(speed.run_matmul_gflops())

    def cell(values, fmt="{:.1f}"):
        return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"

    lines = [f"Preset `{args.preset}`, its baseline stage: {cfg.baseline.epochs} epochs on the labelled photos at "
             f"{cfg.data.image_size} px, validated each epoch. Median of {args.repeats} fits each way (range), "
             "interleaved.", "",
             "| resume state committed | fit (s) | of which checkpoints (s) | kept epoch's validation accuracy |",
             "|---|---:|---:|---:|"]
    for way, r in out.items():
        lines.append(f"| {way} | {cell(r['seconds'])} | {cell(r['checkpoint'], '{:.2f}')} | "
                     f"{cell(r['val'], '{:.3f}')} |")
    before, now = (statistics.median(r["seconds"]) for r in out.values())
    lines += ["", f"The fit took {now / before:.2f}x the time of before.", "",
              f"Command: `python benchmarks/bench_checkpoint.py --preset {args.preset} --repeats {args.repeats}`",
              f"Machine: {machine()}; float32 matmul {matmul[0]:.0f} GFLOP/s at the start, {matmul[1]:.0f} at the end "
              "(`ssl_keras.speed`)."]
    write_table(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
