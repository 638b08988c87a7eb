"""How far the planner's rule for a fit not yet started is from the rate it then runs at, and how much of a budget
the planned runs use.

    python research/rate_ratios.py results

`budget.Clock.rate_for` prices a fit not yet started at the slowest rate measured so far: after the baseline, the
baseline's. Reads every `speed.json` under the folder (every run the project kept) and prints two Markdown tables:

1. each later fit's samples/s over the same run's baseline (min, median, max), by model size (training MFLOP a
   sample) and machine (float32 matmul under 260 GFLOP/s: the 2-core AMD EPYCs seen; above: the 2-core Xeon);
2. for the runs planned by a budget (a `plan.json` with `budget_minutes`): the seconds their fits took over the
   budget's seconds (min, median, max, and how many ran over).
"""

from __future__ import annotations

import collections
import glob
import os
import statistics
import sys

from ssl_keras.files import read_json

LATER = ("pretext", "finetune_1", "fixmatch")


def _spread(values) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def main(folder: str) -> int:
    groups = collections.defaultdict(list)
    used = []
    for path in sorted(glob.glob(os.path.join(folder, "**", "speed.json"), recursive=True)):
        speed = read_json(path)
        fits = speed["fits"]
        if "baseline" not in fits:
            continue
        machine = "AMD EPYC" if max(speed["matmul_gflops"].values()) < 260 else "Intel Xeon"
        base = fits["baseline"]["samples_per_s"]
        groups[(round(speed["train_mflop_per_sample"], 1), machine)].append(
            {k: fits[k]["samples_per_s"] / base for k in LATER if k in fits})
        plan_path = os.path.join(os.path.dirname(path), "plan.json")
        plan = read_json(plan_path) if os.path.exists(plan_path) else {}
        if plan.get("budget_minutes") and plan.get("plans"):
            used.append(sum(f["seconds"] for f in fits.values()) / (60 * plan["budget_minutes"]))
    print("| MFLOP / sample | machine | runs | " + " | ".join(f"{k} ÷ baseline (min / median / max)" for k in LATER)
          + " |")
    print("|---:|---|---:|" + "---|" * len(LATER))
    for (mflop, machine), rows in sorted(groups.items()):
        cells = [_spread([r[k] for r in rows if k in r]) if any(k in r for r in rows) else "-" for k in LATER]
        print(f"| {mflop} | {machine} | {len(rows)} | " + " | ".join(cells) + " |")
    if used:
        print(f"\nBudgeted runs: {len(used)}; their fits' seconds ÷ the budget: {_spread(used)} (min / median / max); "
              f"over the budget: {sum(u > 1 for u in used)}, by at most {max(used) - 1:.0%}.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "results"))
