"""Runs the whole pipeline for several seeds and prints the README's results table.

    python benchmarks/results_table.py --preset default --seeds 0 1 2 --data-dir ../shared/data/dogs
    python benchmarks/results_table.py --preset default --name default-12ep -- --pretext-epochs 12
    python benchmarks/results_table.py --preset default --also-freeze 2 none   # + other blocks frozen

Each seed is a normal run (`python -m ssl_keras.run STAGE --preset P --seed S --run-dir models/results-NAME/seedS
--resume [flags after --]` for the stages baseline, pretext, finetune, evaluate, report); NAME is the preset unless
`--name` says otherwise. A finished seed is not run again (its report.json is read back), an interrupted one
resumes. Writes, under `results/NAME/`: table.md (mean +/- std of each method, with the command and
the machine), comparison.png, and per seed the run's report.json, config.json and curves.

`--also-freeze N...` fine-tunes each seed's rotation model again with N blocks frozen, in a copy of the run
(`models/results-NAME/seedS-variants`, so the run itself is left as it was), and adds a row per setting.

`--pretext-from OTHER` starts each seed from the rotation model of `models/results-OTHER/seedS` (copied with its
config and split) instead of training one (its wall time is the one it took there): for flags after `--` that
change only the labelled stages, e.g.
    python benchmarks/results_table.py --name default-drop02 --pretext-from default -- --set model.dropout=0.2
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import machine  # noqa: E402

from ssl_keras import plots  # noqa: E402

METHODS = (("baseline (from scratch)", "baseline"), ("SSL, backbone frozen", "ssl_frozen"),
           ("SSL, fine-tuned", "ssl"))
# Plots that show a photo (prediction.png, pretext/rotations.png) stay in the run directory: the photos are
# ImageNet's and are not committed.
KEEP = ("report.json", "config.json", "split.json", "comparison.png",
        "baseline/curves.png", "baseline/history.csv", "pretext/curves.png", "pretext/history.csv")
FINETUNE_KEEP = ("curves.png", "history.csv", "test_metrics.json", "confusion.png", "stage.json")  # each finetune_*/


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="default")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--data-dir", default="../shared/data/dogs")
    p.add_argument("--out", default="results")
    p.add_argument("--name", help="names the run and result directories (default: the preset)")
    p.add_argument("--also-freeze", nargs="+", default=[], metavar="N",
                   help="fine-tune again with these blocks frozen (`none`, or a count), a row each")
    p.add_argument("--pretext-from", metavar="OTHER",
                   help="reuse the rotation models (and splits) of results table OTHER's runs")
    p.add_argument("extra", nargs="*", help="more flags for ssl_keras.run, after --")
    args = p.parse_args(argv)
    name = args.name or args.preset
    out = os.path.join(args.out, name)
    reports = []
    for seed in args.seeds:
        run_dir = os.path.join("models", f"results-{name}", f"seed{seed}")
        if not os.path.exists(os.path.join(run_dir, "report.json")):
            if args.pretext_from and not os.path.exists(os.path.join(run_dir, "pretext")):
                _copy_pretext(os.path.join("models", f"results-{args.pretext_from}", f"seed{seed}"), run_dir)
            for stage in ("baseline", "pretext", "finetune", "evaluate", "report"):  # all but export
                cmd = [sys.executable, "-m", "ssl_keras.run", stage, "--preset", args.preset, "--seed", str(seed),
                       "--data-dir", args.data_dir, "--run-dir", run_dir, "--resume", *args.extra]
                _run(cmd)
        keep_dir = os.path.join(out, f"seed{seed}")
        finetuned = [os.path.join(d, f) for d in os.listdir(run_dir) if d.startswith("finetune_")
                     for f in FINETUNE_KEEP]
        kept = [k for k in KEEP  # with --pretext-from, the split and the rotation stage are kept in OTHER's
                if not (args.pretext_from and (k == "split.json" or k.startswith("pretext/")))]
        _keep(run_dir, (*kept, *finetuned), keep_dir)
        with open(os.path.join(run_dir, "report.json")) as f:
            reports.append(json.load(f))
        for freeze in args.also_freeze:
            reports[-1][f"ssl_freeze_{freeze}"] = _also_freeze(run_dir, freeze, keep_dir)

    def values(key, field="test_accuracy"):
        return [r[key][field] for r in reports if r[key].get(field) is not None]

    r0 = reports[0]
    c = r0["counts"]
    lines = [
        f"Preset `{args.preset}`, seeds {args.seeds}, {c['labelled']} labelled photos "
        f"({c['labelled'] // len(r0['classes'])} per class), {c['test']} test photos, "
        f"{c['unlabelled']} unlabelled photos for the rotation task.",
        "",
        "| method | test accuracy (mean ± std) | per seed |",
        "|---|---|---|",
    ]
    bars = {}
    variants = [(f"ssl_freeze_{f}", f"`--freeze {f}`") for f in args.also_freeze]  # (report key, what differs)
    for label, key in [*METHODS, *[(f"SSL, fine-tuned, {what}", key) for key, what in variants]]:
        vals = values(key)
        if vals:
            lines.append(row(label, vals))
            if (label, key) in METHODS:  # the plot compares the three methods only
                bars[label.split(" (")[0]] = mean_std(vals)
    lines.append(row("rotation task (validation)", values("pretext", "val_accuracy")))
    lines.append("")
    for key, label in [("ssl", "Fine-tuned SSL"), *[(key, f"Fine-tuned SSL ({what})") for key, what in variants]]:
        gain = [r[key]["test_accuracy"] - r["baseline"]["test_accuracy"] for r in reports]
        lines.append(f"{label} minus baseline: {100 * statistics.mean(gain):+.1f} points on average "
                     f"({', '.join(f'{100 * g:+.1f}' for g in gain)}).")
    lines += ["Wall time per seed (s): " + "; ".join(
                  ", ".join(f"{k} {v:.0f}" for k, v in r["wall_time_s"].items()) for r in reports),
              "",
              "Command: `python benchmarks/results_table.py " + " ".join(
                  [f"--preset {args.preset}", f"--seeds {' '.join(map(str, args.seeds))}",
                   f"--data-dir {args.data_dir}"] + ([f"--name {args.name}"] if args.name else [])
                  + ([f"--pretext-from {args.pretext_from}"] if args.pretext_from else [])
                  + ([f"--also-freeze {' '.join(args.also_freeze)}"] if args.also_freeze else [])
                  + (["--", *args.extra] if args.extra else [])) + "`",
              f"Machine: {machine()}; TensorFlow backend."]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    plots.comparison(bars, os.path.join(out, "comparison.png"),
                     f"Test accuracy, {c['labelled']} labels, mean ± std over {len(reports)} seeds")
    print("\n".join(lines))


def mean_std(vals) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.mean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def row(label: str, fractions) -> str:
    """A table row: `label`, mean ± std and the per-seed values of `fractions` as percentages."""
    mean, std = mean_std(fractions)
    per_seed = ", ".join(f"{100 * v:.1f}" for v in fractions)
    return f"| {label} | {100 * mean:.1f} ± {100 * std:.1f} % | {per_seed} |"


def _run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def _keep(run_dir: str, rels, keep_dir: str) -> None:
    """Copies the files `rels` (paths inside `run_dir`) that exist to the same paths under `keep_dir`."""
    for rel in rels:
        src = os.path.join(run_dir, rel)
        if os.path.exists(src):
            os.makedirs(os.path.dirname(os.path.join(keep_dir, rel)), exist_ok=True)
            shutil.copy(src, os.path.join(keep_dir, rel))


def _copy_pretext(src: str, dst: str) -> None:
    """Copies a run's config, split and finished rotation stage into `dst`, to train other stages from them."""
    if not os.path.exists(os.path.join(src, "pretext", "best.keras")):
        raise SystemExit(f"No rotation model at {src}/pretext/best.keras to start from. Run that table first.")
    os.makedirs(dst, exist_ok=True)
    for rel in ("config.json", "split.json", "skipped.json"):
        shutil.copy(os.path.join(src, rel), dst)
    shutil.copytree(os.path.join(src, "pretext"), os.path.join(dst, "pretext"), dirs_exist_ok=True)


def _also_freeze(run_dir: str, freeze: str, keep_dir: str) -> dict:
    """The test metrics of the run's rotation model fine-tuned with `freeze` blocks frozen (trained in a copy)."""
    copy, name = run_dir + "-variants", f"finetune_{freeze}"
    metrics = os.path.join(copy, name, "test_metrics.json")
    if not os.path.exists(metrics):
        _copy_pretext(run_dir, copy)
        for stage in ("finetune", "evaluate"):
            cmd = [sys.executable, "-m", "ssl_keras.run", stage, "--run-dir", copy, "--resume", "--freeze", freeze,
                   *(["--set", "also_frozen=false"] if stage == "finetune" else [])]
            _run(cmd)
    _keep(copy, [os.path.join(name, f) for f in FINETUNE_KEEP], keep_dir)
    with open(metrics) as f:
        return {"test_accuracy": json.load(f)["accuracy"]}


if __name__ == "__main__":
    main()
