"""The table of a `fixmatch_variants.sh` comparison, from its kept files.

    python research/variants_table.py results/round18

Reads FOLDER/runs.log (the script's lines: NAME SEED val_last V ... test {...}) and, per run, FixMatch's
FOLDER/NAME/seedS/{stage.json, history.csv}. A NAME ends in -TAG, the base runs it was trained on (`ref-q`, `ref-s`);
each variant's runs are pooled over its tags, in the order of the log. Prints one Markdown row a variant: FixMatch's
epochs and fit seconds, its validation (mean of the last 5 epochs: what a choice is made on), the confident share at
its first and last epoch, and (scored only) its test accuracy and gain over the run's baseline.
"""

import ast
import csv
import json
import os
import statistics
import sys


def main(folder: str) -> int:
    variants: dict[str, list[dict]] = {}
    for line in open(os.path.join(folder, "runs.log")):
        name, seed, _, val, *_ = line.split()
        test = ast.literal_eval(line[line.index("{"):])
        run = os.path.join(folder, name, f"seed{seed}")
        stage = json.load(open(os.path.join(run, "stage.json")))
        confident = [float(r["consistency_confident"]) for r in csv.DictReader(open(os.path.join(run, "history.csv")))]
        variants.setdefault(name.rsplit("-", 1)[0], []).append(
            {"val": 100 * float(val), "seconds": stage["wall_time_s"], "epochs": stage["epochs"],
             "confident": (confident[0], confident[-1]), "test": 100 * test["fixmatch"],
             "gain": 100 * (test["fixmatch"] - test["baseline"])})
    print("| variant | epochs | FixMatch fit (s), mean (range) | validation, last 5 epochs: mean (per run) | "
          "confident share, first / last epoch | test (mean) | test − baseline, mean (per run) |")
    print("|---|---:|---|---|---|---:|---|")
    for name, runs in variants.items():
        seconds = [r["seconds"] for r in runs]
        vals = ", ".join("%.1f" % r["val"] for r in runs)
        gains = ", ".join("%+.1f" % r["gain"] for r in runs)
        first, last = (statistics.mean(r["confident"][i] for r in runs) for i in (0, -1))
        print(f"| {name} | {runs[0]['epochs']} | {statistics.mean(seconds):.0f} ({min(seconds):.0f}-{max(seconds):.0f})"
              f" | {statistics.mean(r['val'] for r in runs):.1f} ({vals}) | {first:.2f} / {last:.2f} | "
              f"{statistics.mean(r['test'] for r in runs):.1f} | "
              f"{statistics.mean(r['gain'] for r in runs):+.1f} ({gains}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
