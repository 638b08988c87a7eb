"""What more time buys: the shipped classifier's gain over the baseline against the run's budget, on a slow machine.

    python benchmarks/gain_vs_budget.py --budgets 5 10 15 20 40 --seeds 0 1 2
    python benchmarks/gain_vs_budget.py --budgets 15 --fixed small data.max_unlabelled=2500 pretext.epochs=3

A budget is in minutes **on the slow machine**, one whose float32 matmul reaches `--slow-gflops`
(50 GFLOP/s: the 2-core AMD EPYC with AVX2, the slowest this project measured). Before each run the script
measures this machine's matmul rate (`ssl_keras.speed.run_matmul_gflops`) and gives the run
`--budget` = budget x slow / this machine's rate: the run then does, at the rates it measures
here, the work the slow machine would do in the budget, as training runs at about the same share
of the matmul rate on both (~30 %). Its time on the slow machine is a projection: the command's
wall time here x this machine's rate / slow. `--fixed NAME KEY=VALUE ...` adds a run without a
budget (a smaller workload, set by config values), projected the same way; where its config has a time cap
(`max_minutes`, `quick`'s 15), the cap is scaled as a budget is (cap x slow / this machine's rate), so the run
shrinks here where the slow machine's run would.

Each run is `python -m ssl_keras.run --preset P --data-dir D --seed S --budget M [--set ...]`
made by `results_table.run_seed` (every stage but the export) in a child process; its wall time
is the child's, from start to the report (Python, TensorFlow and the photo folder's reading
included). Kept under `results/gain_vs_budget/<case>/seed<S>/`: report.json, config.json (the
epochs the budget resolved: `--config` re-makes the run), plan.json, speed.json, wall_time.json.
Writes `results/gain_vs_budget/table.md` and `docs/gain_vs_budget.png`. With `--test-scores FILE` (written by
`research/full_test.py --json`) the finished runs' accuracies are those on every test photo instead of each run's
own (capped) test photos, into `table_all_test.md`.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import time

from common import machine

from ssl_keras.files import read_json, write_json

HERE = os.path.dirname(os.path.abspath(__file__))
KEEP = ("report.json", "config.json", "plan.json", "speed.json", "wall_time.json")


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="quick")
    p.add_argument("--data-dir", default="../shared/data/dogs")
    p.add_argument("--budgets", type=float, nargs="*", default=[5, 10, 15, 20, 40],
                   help="minutes on the slow machine")
    p.add_argument("--fixed", nargs="+", action="append", default=[], metavar="NAME KEY=VALUE",
                   help="a case without a budget: its name, then config values (repeatable)")
    p.add_argument("--case", nargs="+", action="append", default=[], metavar="NAME MINUTES KEY=VALUE",
                   help="a budgeted case with config values: its name, its budget, then the values (repeatable)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--slow-gflops", type=float, default=50.0)
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], help="for every case (repeatable)")
    p.add_argument("--models", default="models/gain_vs_budget")
    p.add_argument("--out", default="results/gain_vs_budget")
    p.add_argument("--plot", default="docs/gain_vs_budget.png")
    p.add_argument("--test-scores", help="the runs' accuracies on all test photos (`research/full_test.py --json`)")
    p.add_argument("--child", nargs=4, metavar=("NAME", "SEED", "MINUTES", "SCALE"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def cases(args) -> list[tuple[str, float | None, list[str]]]:
    """(name, slow-machine budget or None, config values) of every case."""
    out = [(f"budget-{b:g}", b, []) for b in args.budgets]
    out += [(name, float(minutes), values) for name, minutes, *values in args.case]
    return out + [(name, None, values) for name, *values in args.fixed]


def child(args) -> None:
    """One seed of one case, in this process (`results_table.run_seed`)."""
    started = time.monotonic()  # the budget counts from the child's start, as `python -m ssl_keras.run`'s does
    import results_table

    name, seed, minutes, scale = args.child[0], int(args.child[1]), float(args.child[2]), float(args.child[3])
    sets = list(args.set) + ([f"budget_minutes={minutes}"] if minutes > 0 else [])
    rt = results_table.parse(["--preset", args.preset, "--data-dir", args.data_dir, "--models", args.models,
                              "--seeds", str(seed)] + [a for s in sets for a in ("--set", s)])
    cap = results_table.config_for(rt, seed).max_minutes
    if cap and minutes <= 0:  # the time cap in the slow machine's minutes, as the budget is (SCALE = slow / here)
        rt.set.append(f"max_minutes={cap * scale:.3f}")
    from ssl_keras import quiet

    quiet.import_tensorflow()
    results_table.run_seed(rt, seed, name, started=started)


def run_case(args, name: str, budget: float | None, values: list[str], seed: int) -> dict:
    """Runs (or reads back) one seed of a case; returns its row data."""
    from ssl_keras import speed

    keep_dir = os.path.join(args.out, name, f"seed{seed}")
    timing = os.path.join(keep_dir, "timing.json")
    if os.path.exists(timing):
        return read_json(timing)
    rate = speed.run_matmul_gflops()
    minutes = budget * args.slow_gflops / rate if budget else 0.0
    run_dir = os.path.join(args.models, f"results-{name}", f"seed{seed}")
    shutil.rmtree(run_dir, ignore_errors=True)  # a budgeted run plans from its start: no resume
    cmd = [sys.executable, os.path.join(HERE, "gain_vs_budget.py"), "--preset", args.preset, "--data-dir",
           args.data_dir, "--models", args.models, "--child", name, str(seed), f"{minutes:.3f}",
           f"{args.slow_gflops / rate:.5f}"]
    cmd += [a for s in list(args.set) + values for a in ("--set", s)]
    print(f"\n== {name}, seed {seed}: matmul {rate:.0f} GFLOP/s here; --budget {minutes:.2f} min" if budget
          else f"\n== {name}, seed {seed}: matmul {rate:.0f} GFLOP/s here; no budget; {' '.join(values)}", flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - start
    os.makedirs(keep_dir, exist_ok=True)
    for f in KEEP:
        if os.path.exists(os.path.join(run_dir, f)):
            shutil.copy(os.path.join(run_dir, f), os.path.join(keep_dir, f))
    report = read_json(os.path.join(run_dir, "report.json"))
    sp = read_json(os.path.join(run_dir, "speed.json"))
    cfg = read_json(os.path.join(run_dir, "config.json"))
    run_rate = max(rate, sp["matmul_gflops"]["start"], sp["matmul_gflops"]["end"])
    row = {"case": name, "seed": seed, "budget_slow_min": budget, "budget_here_min": round(minutes, 3),
           "values": values, "seconds_here": round(seconds, 1), "matmul_gflops": round(run_rate, 1),
           "projected_slow_min": round(seconds * run_rate / args.slow_gflops / 60, 1),
           "baseline": report["baseline"]["test_accuracy"], "shipped": report["best"]["test_accuracy"],
           "shipped_label": report["best"]["label"], "shipped_val": report["best"]["val_accuracy"],
           "epochs": {k: cfg[k]["epochs"] for k in ("baseline", "pretext", "finetune")}
           | {"fixmatch": cfg["fixmatch"]["train"]["epochs"]}}
    write_json(timing, row)
    return row


def rescored(args, scores: dict, row: dict) -> dict:
    """The row with the baseline's and the shipped classifier's accuracies on every test photo (`scores`: the
    `--test-scores` file's contents)."""
    key = os.path.normpath(os.path.join(args.models, f"results-{row['case']}", f"seed{row['seed']}"))
    if key not in scores:
        raise SystemExit(f"{args.test_scores} has no scores of {key!r}: run `research/full_test.py {key} --json "
                         f"{args.test_scores}` first.")
    return row | {k: scores[key][k] for k in ("baseline", "shipped", "photos")}


def table(args, rows_by_case) -> list[str]:
    lines = [f"Preset `{args.preset}`, `--data-dir {args.data_dir}`, seeds {args.seeds}. Budgets and times in minutes "
             f"on a {args.slow_gflops:g} GFLOP/s machine, **projected** from this one (each run's wall time x its "
             f"matmul rate / {args.slow_gflops:g}); test accuracy of the baseline and of the classifier shipped "
             "(picked by validation)" + (f", on all {next(iter(rows_by_case.values()))[0]['photos']} test photos "
                                         f"(`research/full_test.py`, `{args.test_scores}`)" if args.test_scores
                                         else "") + ", mean over seeds and each seed; gain in points.", "",
             "| case | budget (slow min) | run, projected (slow min), mean (range) | run here (min) | matmul here "
             "(GFLOP/s) | epochs: baseline, pretext, finetune, fixmatch (seed 0) | baseline % | shipped % | "
             "validation % of the shipped | gain per seed | mean gain (range) |",
             "|---|---:|---|---:|---:|---|---|---|---|---|---|"]
    for name, rows in rows_by_case.items():
        r0 = rows[0]
        proj = [r["projected_slow_min"] for r in rows]
        gains = [100 * (r["shipped"] - r["baseline"]) for r in rows]
        budget = (f"{r0['budget_slow_min']:g}" if r0["budget_slow_min"] else "none") + "".join(
            f"; `{v}`" for v in r0["values"])
        lines.append(
            f"| {name} | {budget} | {statistics.mean(proj):.1f} ({min(proj):.1f}-{max(proj):.1f}) | "
            f"{statistics.mean(r['seconds_here'] for r in rows) / 60:.1f} | "
            f"{statistics.mean(r['matmul_gflops'] for r in rows):.0f} | "
            f"{', '.join(str(v) for v in r0['epochs'].values())} | "
            f"{100 * statistics.mean(r['baseline'] for r in rows):.1f} "
            f"({_each(rows, 'baseline')}) | "
            f"{100 * statistics.mean(r['shipped'] for r in rows):.1f} "
            f"({_each(rows, 'shipped')}) | "
            f"{100 * statistics.mean(r['shipped_val'] for r in rows):.1f} | "
            f"{', '.join(f'{g:+.1f}' for g in gains)} | **{statistics.mean(gains):+.1f}** "
            f"({min(gains):+.1f} to {max(gains):+.1f}) |")
    shipped = sorted({r["shipped_label"] for rows in rows_by_case.values() for r in rows})
    lines += ["", f"Classifiers shipped (by validation): {', '.join(shipped)}.", "",
              "Command: `python benchmarks/gain_vs_budget.py " + " ".join(
                  [f"--preset {args.preset}", f"--data-dir {args.data_dir}",
                   f"--budgets {' '.join(f'{b:g}' for b in args.budgets)}",
                   f"--seeds {' '.join(map(str, args.seeds))}"]
                  + [f"--case {' '.join(c)}" for c in args.case]
                  + [f"--fixed {' '.join(f)}" for f in args.fixed] + [f"--set {s}" for s in args.set]
                  + [f"--out {args.out} --models {args.models} --plot {args.plot}"]
                  + ([f"--test-scores {args.test_scores}"] if args.test_scores else [])) + "`",
              f"Machine: {machine()}."]
    return lines


def plot(args, rows_by_case) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    series: dict[tuple, list] = {}  # budgeted cases, by their config values
    for rows in rows_by_case.values():
        if rows[0]["budget_slow_min"]:
            series.setdefault(tuple(rows[0]["values"]), []).append(rows)
    for i, (values, cases_) in enumerate(series.items()):
        color = f"C{i if i == 0 else i + 1}"  # C1 (orange) is the no-budget cases'
        cases_.sort(key=lambda rows: rows[0]["budget_slow_min"])
        xs = [statistics.mean(r["projected_slow_min"] for r in rows) for rows in cases_]
        for x, rows in zip(xs, cases_):
            ax.plot([x] * len(rows), [100 * (r["shipped"] - r["baseline"]) for r in rows], "o", color=color,
                    alpha=0.35)
        ys = [statistics.mean(100 * (r["shipped"] - r["baseline"]) for r in rows) for rows in cases_]
        label = f"`{args.preset}` --budget" + (" " + " ".join(values) if values else "") + " (mean; dots: seeds)"
        ax.plot(xs, ys, "-o", color=color, label=label)
    fixed = [(name, rows) for name, rows in rows_by_case.items() if not rows[0]["budget_slow_min"]]
    for (name, rows), marker in zip(fixed, itertools.cycle("sD^vPX")):  # one marker a case, all orange
        gains = [100 * (r["shipped"] - r["baseline"]) for r in rows]
        x = statistics.mean(r["projected_slow_min"] for r in rows)
        ax.plot([x] * len(gains), gains, marker, color="tab:orange", alpha=0.35)
        ax.plot([x], [statistics.mean(gains)], marker, color="tab:orange", label=f"{name} (no budget)")
    ax.axhline(5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel(f"whole run, minutes on a {args.slow_gflops:g} GFLOP/s 2-core CPU (projected)")
    photos = next(iter(rows_by_case.values()))[0].get("photos") if args.test_scores else None
    ax.set_ylabel("shipped − baseline, test points" + (f" ({photos} photos)" if photos else ""))
    ax.set_title("What more time buys")
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
    fig.savefig(args.plot, dpi=110)
    plt.close(fig)


def _each(rows, key: str) -> str:
    """`28.1, 29.0, 27.5`: each seed's accuracy in %."""
    return ", ".join(f"{100 * r[key]:.1f}" for r in rows)


def main(argv=None) -> int:
    args = parse(argv)
    if args.child:
        child(args)
        return 0
    from ssl_keras import quiet

    quiet.import_tensorflow()
    rows_by_case = {}
    for seed in args.seeds:  # the cases side by side, seed by seed: the machine's load drifts alike for all
        for name, budget, values in cases(args):
            rows_by_case.setdefault(name, []).append(run_case(args, name, budget, values, seed))
    if args.test_scores:
        scores = read_json(args.test_scores)
        rows_by_case = {name: [rescored(args, scores, r) for r in rows] for name, rows in rows_by_case.items()}
    lines = table(args, rows_by_case)
    out = os.path.join(args.out, "table_all_test.md" if args.test_scores else "table.md")
    os.makedirs(args.out, exist_ok=True)
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    plot(args, rows_by_case)
    print("\n".join(lines) + f"\n\nWritten to {out} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
