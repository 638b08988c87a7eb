"""Runs the whole experiment for several seeds and prints the results table (mean ± std and range over seeds).

    python benchmarks/results_table.py --preset default --seeds 0 1 2
    python benchmarks/results_table.py --preset quick --method all --name quick-all
    python benchmarks/results_table.py --preset quick --seeds 0 --name quick-st-t05 --set self_training.threshold=0.5

Each seed is the run `python -m ssl_keras.run --preset P --seed S --data-dir D --run-dir models/results-NAME/seedS
--resume [--method M] [--set ...]` makes, every stage but the export, made in-process by `ssl_keras.experiment`
with the config `ssl_keras.run.resolve` makes of those flags. A finished seed is read back, an interrupted one
resumes; a seed made with another config stops the command (a run that a time cap or a budget planned is
compared as its plan.json says it re-planned its epochs). NAME is the preset unless `--name` says otherwise.
Writes, under `results/NAME/`: table.md (each classifier's test accuracy, its gap to the baseline, the classifier
picked by validation accuracy, with the command and the machine), comparison.png, and per seed the run's
report.json, config.json, split.json, and each stage's history.csv, curves.png and stage.json.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import statistics
import sys

from common import machine

from ssl_keras import config as config_lib
from ssl_keras import evaluate, experiment, presets
from ssl_keras import run as cli

# Plots that show a photo (prediction.png, pretext/rotations.png) stay in the run directory: the photos are
# ImageNet's and are not committed.
KEEP = ("report.json", "config.json", "split.json", "speed.json", "plan.json")
STAGE_KEEP = ("history.csv", "curves.png", "stage.json", "test_metrics.json", "pseudo_labels.json")
STAGES = tuple(s for s in experiment.STAGES if s != "export")


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="default", choices=sorted(presets.PRESETS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--data-dir", default="../shared/data/dogs")
    p.add_argument("--method", help="as `python -m ssl_keras.run --method` (default: the preset's)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], help="a config value (repeatable)")
    p.add_argument("--name", help="names the run and result directories (default: the preset)")
    p.add_argument("--out", default="results")
    p.add_argument("--models", default="models", help="where the runs go (default: models/)")
    return p.parse_args(argv)


def config_for(args, seed: int):
    """The config `python -m ssl_keras.run --preset P --seed S --data-dir D [--method M] [--set ...]` resolves,
    by the command line's own `resolve`."""
    argv = ["--preset", args.preset, "--seed", str(seed), "--data-dir", args.data_dir]
    argv += ["--method", args.method] if args.method else []
    for assignment in args.set:
        argv += ["--set", assignment]
    cfg, _ = cli.resolve(cli.build_parser().parse_intermixed_args(argv))
    return cfg


def planned(cfg, run_dir: str):
    """`cfg` as a run of it under a time cap or a budget rewrote its config.json: the epochs of each plan in its
    plan.json, the cap and the budget cleared (`experiment._fit_budget`); `cfg` itself without a plan."""
    from ssl_keras import budget, rundir

    path = os.path.join(run_dir, "plan.json")
    plans = rundir.read_json(path).get("plans", []) if os.path.exists(path) else []
    if not plans:
        return cfg
    epochs = {}
    for plan in plans:  # each plan sets the sections not yet begun
        epochs.update(plan["epochs"])
    return budget.planned(cfg, epochs)


def run_seed(args, seed: int, name: str, started: float | None = None) -> str:
    """Runs (or resumes) one seed's experiment; returns its run directory. `started`: when the command began
    (time.monotonic), where a budget counts from (default: now)."""
    from ssl_keras import rundir

    cfg = config_for(args, seed)
    run_dir = os.path.join(args.models, f"results-{name}", f"seed{seed}")
    saved = os.path.join(run_dir, "config.json")
    if os.path.exists(saved) and rundir.read_json(saved) != config_lib.to_dict(planned(cfg, run_dir)):
        raise SystemExit(f"{run_dir} was made with another config than this command resolves (the preset or the "
                         f"code changed since?). Remove {run_dir} to make it again, or pass another --name.")
    if not os.path.exists(os.path.join(run_dir, "report.json")):
        experiment.prepare(cfg)
        run = rundir.Run(cfg, run_dir, resume=True, verbose=2, log=lambda *a: print(*a, flush=True), started=started)
        experiment.run_stages(run, STAGES)
    return run_dir


def keep(run_dir: str, keep_dir: str) -> None:
    """Copies the run's small files (no model, no photo) to `keep_dir`, in the same layout."""
    rels = list(KEEP)
    for folder, _, files in os.walk(run_dir):
        rel = os.path.relpath(folder, run_dir)
        if rel != "." and not rel.startswith(("backup", "logs")) and "/backup" not in rel and "/logs" not in rel:
            rels += [os.path.join(rel, f) for f in files if f in STAGE_KEEP]
    for rel in rels:
        src = os.path.join(run_dir, rel)
        folder = os.path.dirname(rel)
        own = os.path.join(run_dir, os.path.dirname(folder), os.path.basename(rel))  # the method's file, a level up
        if os.path.basename(folder).startswith("round") and os.path.isfile(own) and filecmp.cmp(src, own, False):
            continue  # the last round's files are also its method's own: stored once
        if os.path.exists(src):
            os.makedirs(os.path.dirname(os.path.join(keep_dir, rel)), exist_ok=True)
            shutil.copy(src, os.path.join(keep_dir, rel))


def mean_std(vals) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.mean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def row(label: str, fractions, points=False, val=None) -> str:
    """A table row: `label`, [the mean of `val`,] mean ± std, the range (min to max) and the per-seed values, in %,
    or in points."""
    scale = 100
    mean, std = mean_std([scale * v for v in fractions])
    per_seed = ", ".join(f"{scale * v:+.1f}" if points else f"{scale * v:.1f}" for v in fractions)
    lo, hi = min(fractions) * scale, max(fractions) * scale
    if val is not None:
        label += f" | {100 * statistics.mean(val):.1f}" if val else " | -"
    if points:
        return f"| {label} | {mean:+.1f} ± {std:.1f} | {lo:+.1f} to {hi:+.1f} | {per_seed} |"
    return f"| {label} | {mean:.1f} ± {std:.1f} % | {lo:.1f} to {hi:.1f} | {per_seed} |"


def table(reports, args, name) -> tuple[list[str], dict]:
    """The lines of table.md and the bars of its plot (label -> (mean, std))."""
    from ssl_keras import rundir

    r0 = reports[0]
    c = r0["counts"]
    cfg = config_lib.from_dict(_read(os.path.join(args.models, f"results-{name}", f"seed{args.seeds[0]}",
                                                  "config.json")))
    entries = [e for e in rundir.classifiers(cfg) if all(e.key in r for r in reports)]
    lines = [
        f"Preset `{args.preset}`, method {', '.join(cfg.method)}, seeds {args.seeds}: {c['labelled']} labelled photos "
        f"({c['labelled'] // len(r0['classes'])} per class), {c['val']} validation photos, {c['test']} test photos, "
        f"{c['unlabelled'] + c['unlabelled_val']} unlabelled photos"
        + (f" ({c['pool_from_labelled']} of them the training photos' pixels; "
           f"{c['pool_duplicates_left_out']} byte copies of validation/test photos left out)."
           if "pool_from_labelled" in c else "."),
        "",
        "| classifier | val (last 5 epochs), mean | test accuracy, mean ± std | range over seeds | per seed |",
        "|---|---:|---|---|---|",
    ]
    bars = {}
    for e in entries:
        vals = [r[e.key]["test_accuracy"] for r in reports]
        lines.append(row(e.label, vals, val=[rundir.val_score(r[e.key]) for r in reports]))
        bars[e.label] = tuple(v / 100 for v in mean_std([100 * v for v in vals]))
    if all(r.get("best") for r in reports):
        lines.append(row("**picked by validation accuracy**", [r["best"]["test_accuracy"] for r in reports],
                         val=[rundir.val_score(r["best"]) for r in reports]))
    lines.append(row("rotation task (accuracy on its own validation photos)",
                     [r["pretext"]["val_accuracy"] for r in reports], val=[]))
    lines += ["", "Minus the baseline, in points (what one run can show: the range):", "",
              "| classifier | gain, mean ± std | range over seeds | per seed |", "|---|---|---|---|"]
    for e in entries[1:]:
        lines.append(row(e.label, [r[e.key]["test_accuracy"] - r["baseline"]["test_accuracy"] for r in reports],
                         points=True))
    if all(r.get("best") for r in reports):
        lines.append(row("**picked by validation accuracy**",
                         [r["best"]["test_accuracy"] - r["baseline"]["test_accuracy"] for r in reports], points=True))
        picked = [(r["seed"], r["best"]["label"], rundir.val_score(r["best"])) for r in reports]
        lines += ["", "Picked by validation accuracy (last 5 epochs), per seed: "
                  + "; ".join(f"seed {seed}: {label} ({100 * val:.1f} %)" for seed, label, val in picked) + "."]
    if all(r.get("best", {}).get("test") and r["baseline"].get("test") for r in reports):
        lines += ["", f"Per seed, with 95 % Wilson intervals on the {c['test']} test photos (what one run can tell):",
                  "", "| seed | baseline | picked by validation | gain (points) | intervals overlap? |",
                  "|---:|---|---|---:|---|"]
        for r in reports:
            b, p = r["baseline"]["test"], r["best"]["test"]
            overlap = evaluate.overlap(p["interval_95"], b["interval_95"])
            lines.append(f"| {r['seed']} | {_interval(b)} | {_interval(p)} ({r['best']['label']}) | "
                         f"{100 * (p['accuracy'] - b['accuracy']):+.1f} | {'yes' if overlap else 'no'} |")
    for r in reports:
        for rnd in r.get("self_training", {}).get("rounds", []):
            prec = rnd["in_class_precision"]
            lines.append(f"Self-training, seed {r['seed']}, round {rnd['round']}: teacher {' + '.join(rnd['teacher'])} "
                         f"(val {100 * rnd['teacher_val_accuracy']:.1f} %), threshold {rnd['threshold']:.3f}; "
                         f"{rnd['pseudo_labelled']} of {rnd['pool']} pool photos pseudo-labelled, "
                         f"{rnd['other_breeds']} of other breeds, in-class precision "
                         f"{'-' if prec is None else f'{100 * prec:.1f} %'}; student val "
                         f"{100 * rnd['student_val_accuracy']:.1f} %.")
    lines += ["", "Wall time per seed (s): " + "; ".join(
        f"seed {r['seed']}: " + ", ".join(f"{k} {v:.0f}" for k, v in r["wall_time_s"].items()) for r in reports),
        "",
        "Command: `python benchmarks/results_table.py " + " ".join(
            [f"--preset {args.preset}", f"--seeds {' '.join(map(str, args.seeds))}", f"--data-dir {args.data_dir}"]
            + ([f"--method {args.method}"] if args.method else []) + [f"--set {s}" for s in args.set]
            + ([f"--name {args.name}"] if args.name else [])) + "`",
        f"Machine: {machine()}; TensorFlow backend."]
    return lines, bars


def _interval(scored: dict) -> str:
    """`31.2 % (29.5-33.0)`: a test accuracy and its 95 % Wilson interval."""
    lo, hi = scored["interval_95"]
    return f"{100 * scored['accuracy']:.1f} % ({100 * lo:.1f}-{100 * hi:.1f})"


def _read(path):
    import json

    with open(path) as f:
        return json.load(f)


def main(argv=None) -> int:
    args = parse(argv)
    from ssl_keras import quiet

    quiet.import_tensorflow()
    from ssl_keras import plots

    name = args.name or args.preset
    out = os.path.join(args.out, name)
    reports = []
    for seed in args.seeds:
        run_dir = run_seed(args, seed, name)
        keep(run_dir, os.path.join(out, f"seed{seed}"))
        reports.append(_read(os.path.join(run_dir, "report.json")))
    lines, bars = table(reports, args, name)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    c = reports[0]["counts"]
    plots.comparison(bars, os.path.join(out, "comparison.png"),
                     f"Test accuracy, {c['labelled']} labels, mean ± std over {len(reports)} seeds")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
