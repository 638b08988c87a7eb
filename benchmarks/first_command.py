"""The README's first command, seed by seed, timed whole and stage by stage, on a CPU slowed to a share of its time.

    python benchmarks/first_command.py --share 0.5 --seeds 0 1 2 --models models/slow50

Each seed runs, under `benchmarks/slow_cpu.sh SHARE` (a cgroup CPU quota; root), the README's first command with a
seed and fixed folders:

    python -m ssl_keras.run --preset P --data-dir D --seed S --run-dir MODELS/seedS --export-dir /tmp/NAME/exportS

its output kept in MODELS/seedS.log. A seed whose log holds the command's end is read back, not run again. Prints
(and writes `--out`) one row a seed: the float32 matmul rate inside the quota (before and after the command, and
as the run measured it), the epochs it ran, each stage's seconds, the command's minutes without the export (the
first command's promise counts neither the install nor the export), the export's seconds, each fit's share of
the run's matmul rate, the first and last `[plan]` estimates of the whole run, and the test accuracy of the
baseline and of the classifier shipped, with the gain.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile

from common import machine, write_table

HERE = os.path.dirname(os.path.abspath(__file__))
FITS = ("baseline", "pretext", "finetune_1", "fixmatch")
STAGES = ("baseline", "pretext", "finetune", "methods", "evaluate")
END = re.compile(r"\[slow_cpu\] the command took (\d+) s \(exit (\d+)\); float32 matmul after: (\d+)")
BEFORE = re.compile(r"\[slow_cpu\] share \S+ of a CPU; float32 matmul before: (\d+)")
WHOLE = re.compile(r"whole run (?:≈ )?([\d.]+) (min|s)")


def share(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"a share of one CPU's time above 0, got {text}")
    return value


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--share", type=share, default=0.5, help="of one CPU's time (0.5: the slow machine here)")
    p.add_argument("--preset", default="quick", help="the README's first command runs quick")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--data-dir", default="../shared/data/dogs")
    p.add_argument("--models", default="models/slow50", help="the seeds' run directories and logs go here")
    p.add_argument("--out", default="benchmarks/results/first_command.md")
    return p.parse_args(argv)


def command(args, seed, python: str = sys.executable) -> list[str]:
    export_dir = os.path.join(tempfile.gettempdir(), os.path.basename(os.path.normpath(args.models)), f"export{seed}")
    run = [python, "-m", "ssl_keras.run", "--preset", args.preset, "--data-dir", args.data_dir, "--seed",
           str(seed), "--run-dir", os.path.join(args.models, f"seed{seed}"), "--export-dir", export_dir]
    slow = os.path.relpath(os.path.join(HERE, "slow_cpu.sh"))  # benchmarks/slow_cpu.sh from the repository root
    return ["bash", slow, str(args.share), "--"] + run


def run_seed(args, seed: int) -> str:
    """The seed's log, running the command first unless its log already holds the command's end."""
    log = os.path.join(args.models, f"seed{seed}.log")
    if os.path.exists(log) and END.search(open(log, errors="replace").read()):
        print(f"seed {seed}: read back from {log}", flush=True)
        return log
    os.makedirs(args.models, exist_ok=True)
    cmd = command(args, seed)
    print(f"seed {seed}: {shlex.join(cmd)} > {log}", flush=True)
    with open(log, "w") as f:
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False)
    return log


def row(args, seed: int, log: str) -> dict:
    from ssl_keras.files import read_json

    text = open(log, errors="replace").read()
    end = END.search(text)
    if not end or end.group(2) != "0":
        raise SystemExit(f"{log}: the command did not end well (exit {end.group(2) if end else '?'}); see the log.")
    run_dir = os.path.join(args.models, f"seed{seed}")
    read = lambda name: read_json(os.path.join(run_dir, name))  # noqa: E731
    speed, wall, report, cfg = read("speed.json"), read("wall_time.json"), read("report.json"), read("config.json")
    plans = [m for line in text.splitlines() if line.startswith("[plan]") for m in WHOLE.findall(line)]
    minutes = [float(v) / (60 if unit == "s" else 1) for v, unit in plans]
    before = BEFORE.search(text)
    export = wall.get("export", 0.0)
    return {
        "seed": seed,
        "matmul_quota": (int(before.group(1)) if before else 0, int(end.group(3))),
        "matmul_run": (speed["matmul_gflops"]["start"], speed["matmul_gflops"]["end"]),
        "epochs": (cfg["baseline"]["epochs"], cfg["pretext"]["epochs"], cfg["finetune"]["epochs"],
                   cfg["fixmatch"]["train"]["epochs"]),
        "stages": [wall.get(s, 0.0) for s in STAGES],
        "minutes": (int(end.group(1)) - export) / 60,
        "export": export,
        "share": [speed["fits"].get(f, {}).get("of_matmul") for f in FITS],
        "plan": (minutes[0], minutes[-1]) if minutes else (None, None),
        "capped": "[time cap]" in text,
        "baseline": report["baseline"]["test"],
        "best": report["best"],
    }


def table(args, rows: list[dict]) -> list[str]:
    pct = lambda a: f"{100 * a:.1f}"  # noqa: E731
    seeds = ", ".join(str(r["seed"]) for r in rows)
    lines = [f"Preset `{args.preset}`, the README's first command (on {args.share} of a CPU's time, a cgroup quota), "
             f"seeds {seeds}; "
             f"{rows[0]['baseline']['photos']} test photos.", "",
             "| seed | matmul in the quota, before / after (GFLOP/s) | matmul as the run measured (start, end) "
             "| epochs | baseline, pretext, finetune, methods, evaluate (s) | command without export (min) "
             "| export (s) "
             "| share of matmul: baseline, pretext, fine-tuning, FixMatch | whole run, first `[plan]` / last (min) "
             "| baseline, test (95 %) | shipped, test (95 %) | gain (points) |",
             "|---:|---|---|---|---|---:|---:|---|---|---|---|---:|"]
    for r in rows:
        b, best = r["baseline"], r["best"]
        lo, hi = (pct(x) for x in b["interval_95"])
        blo, bhi = (pct(x) for x in best["test"]["interval_95"])
        lines.append(
            f"| {r['seed']} | {r['matmul_quota'][0]} / {r['matmul_quota'][1]} | {r['matmul_run'][0]:.0f}, "
            f"{r['matmul_run'][1]:.0f} | {'/'.join(map(str, r['epochs']))}{' (capped)' if r['capped'] else ''} | "
            f"{', '.join(f'{s:.0f}' for s in r['stages'])} | **{r['minutes']:.1f}** | {r['export']:.0f} | "
            f"{', '.join('-' if s is None else f'{100 * s:.0f} %' for s in r['share'])} | "
            f"{' / '.join('-' if m is None else f'{m:.1f}' for m in r['plan'])} | {pct(b['accuracy'])} ({lo}-{hi}) | "
            f"{pct(best['test']['accuracy'])} ({blo}-{bhi}), {best['label']} | **{best['gap_points']:+.1f}** |")
    minutes = [r["minutes"] for r in rows]
    gains = [r["best"]["gap_points"] for r in rows]
    lines += ["", f"Command without export: {statistics.mean(minutes):.1f} min on average ({min(minutes):.1f}-"
              f"{max(minutes):.1f}); gain {statistics.mean(gains):+.1f} points on average ({min(gains):+.1f} to "
              f"{max(gains):+.1f}), +5 or more in {sum(g >= 5 for g in gains)} of {len(gains)} seeds.", "",
              f"Command: `python benchmarks/first_command.py --preset {args.preset} --share {args.share} --seeds "
              f"{seeds.replace(',', '')} --models {args.models}`"
              + f"; each seed S runs `{shlex.join(command(args, 'S', python='python'))}`",
              f"Machine: {machine()}; the matmul columns are `ssl_keras.speed`'s float32 rate."]
    return lines


def main(argv=None) -> int:
    args = parse(argv)
    logs = {seed: run_seed(args, seed) for seed in args.seeds}
    from ssl_keras import quiet

    quiet.import_tensorflow()
    write_table(table(args, [row(args, seed, log) for seed, log in logs.items()]), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
