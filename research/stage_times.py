"""Per case of a `benchmarks/gain_vs_budget.py` output: each stage's seconds and share of the matmul rate, and the
validation accuracy of the shipped classifier, seed by seed; for changes meant to save time, side by side.

    python research/stage_times.py results/cpu_seconds

Reads `<out>/<case>/seed<S>/speed.json` and `timing.json` (kept by gain_vs_budget.py). Prints a Markdown table:
each fit's seconds (mean over seeds) and share of the matmul rate, the whole run's seconds here and projected on
the slow machine, the shipped classifier's validation accuracy (mean of its last 5 epochs) per seed and its mean,
and the test gain over the baseline (for the record: choices are made on validation).
"""

from __future__ import annotations

import glob
import json
import os
import statistics
import sys

FITS = ("baseline", "pretext", "finetune_all", "finetune_1", "fixmatch")


def main(out: str) -> int:
    cases = {}
    for timing in sorted(glob.glob(os.path.join(out, "*", "seed*", "timing.json"))):
        case_dir = os.path.dirname(timing)
        with open(timing) as f:
            row = json.load(f)
        with open(os.path.join(case_dir, "speed.json")) as f:
            row["speed"] = json.load(f)
        cases.setdefault(row["case"], []).append(row)
    print("| case | " + " | ".join(f"{f} s (of matmul)" for f in FITS)
          + " | run here (s) | projected slow (min) | validation of the shipped, per seed | mean | test gain, per seed"
          " | mean |")
    print("|---|" + "---:|" * len(FITS) + "---:|---:|---|---:|---|---:|")
    for name, rows in cases.items():
        rows.sort(key=lambda r: r["seed"])
        cells = []
        for fit in FITS:
            got = [r["speed"]["fits"][fit] for r in rows if fit in r["speed"]["fits"]]
            cells.append(f"{statistics.mean(g['seconds'] for g in got):.1f} "
                         f"({100 * statistics.mean(g['of_matmul'] for g in got):.0f}%)" if got else "-")
        vals = [100 * r["shipped_val"] for r in rows]
        gains = [100 * (r["shipped"] - r["baseline"]) for r in rows]
        print(f"| {name} | " + " | ".join(cells)
              + f" | {statistics.mean(r['seconds_here'] for r in rows):.0f}"
              f" | {statistics.mean(r['projected_slow_min'] for r in rows):.1f}"
              f" | {', '.join(f'{v:.1f}' for v in vals)} | **{statistics.mean(vals):.1f}**"
              f" | {', '.join(f'{g:+.1f}' for g in gains)} | {statistics.mean(gains):+.1f} |")
    rates = [r["matmul_gflops"] for rows in cases.values() for r in rows]
    print(f"\nSeeds: {sorted({r['seed'] for rows in cases.values() for r in rows})}; float32 matmul "
          f"{min(rates):.0f}-{max(rates):.0f} GFLOP/s here (the faster of each run's measurements).")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "results/cpu_seconds"))
