"""Test accuracy against labels per class: how many labels do the unlabelled photos save?

    python benchmarks/label_efficiency.py --preset quick                  # the whole sweep (hours on 2 cores)
    python benchmarks/label_efficiency.py --preset tiny --labels 2 4 --seeds 0 --out-dir /tmp/le  # a smoke run

Protocol. Every cell (seed S, L labels per class) is the run `python -m ssl_keras.run
--preset P --seed S --labels-per-class L --run-dir <work-dir>/seedS/L<L> --resume` makes,
every stage but the export, made in-process by `ssl_keras.experiment`: the same split
rule (the test photos do not depend on L; the first L of each class's shuffled photos
are labelled, the next `val_per_class` validate), the same stages and the preset's
method. One rotation model per seed: it is trained in the run of the smallest L (the
largest unlabelled pool) and copied into the seed's other runs, as RotNet pretrains once
on all training images. "all" is the largest L that every class can give.

Resumable: finished cells are read back. Writes `<out-dir>/label_efficiency.json`, the
table `<out-dir>/label_efficiency.md` (mean ± std over seeds, the labels the baseline
needs to match each, beside RotNet's CIFAR-10 numbers) and `--plot`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

from common import machine

from ssl_keras import config as config_lib
from ssl_keras import experiment, files, presets

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_LABELS = ("5", "10", "25", "57", "100", "250", "all")
STAGES = tuple(s for s in experiment.STAGES if s != "export")
# Gidaris, Singh & Komodakis, "Unsupervised Representation Learning by Predicting Image Rotations",
# ICLR 2018, semi-supervised CIFAR-10 (labels per class -> test accuracy %).
ROTNET_CIFAR10 = {20: (64.6, 33.7), 100: (75.3, 47.3)}


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.path.join(REPO, "..", "shared", "data", "dogs"))
    p.add_argument("--preset", default="quick", choices=sorted(presets.PRESETS))
    p.add_argument("--labels", nargs="+", default=list(DEFAULT_LABELS),
                   help="labels per class to try; 'all' = as many as every class has (default: %(default)s)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], help="a config value (repeatable)")
    p.add_argument("--out-dir", default=os.path.join(REPO, "benchmarks", "results"))
    p.add_argument("--plot", default=os.path.join(REPO, "docs", "label_efficiency.png"))
    p.add_argument("--work-dir", default=os.path.join(REPO, "models", "label_efficiency"))
    return p.parse_args(argv)


def base_config(args):
    cfg = presets.preset(args.preset)
    for assignment in args.set:
        cfg = config_lib.override(cfg, config_lib.parse_assignment(assignment))
    return config_lib.override(cfg, {"data": {"data_dir": os.path.abspath(args.data_dir)}})


def max_labels(records, classes, val_per_class: int, test_fraction: float) -> int:
    """The largest `labels_per_class` that every class in `classes` can give (what `split.make_split` accepts)."""
    out = []
    for cls in classes:
        recs = [r for r in records if r.label == cls]
        rest = sum(r.declared != "test" for r in recs)
        if not any(r.declared == "test" for r in recs):
            rest -= max(1, round(rest * test_fraction))
        out.append(rest - val_per_class)
    return min(out)


def label_counts(wanted, most: int) -> list[tuple[str, int]]:
    """("5", 5), ..., ("all", most), smallest first; counts above `most` are an error."""
    out = []
    for w in wanted:
        n = most if w == "all" else int(w)
        if n < 1 or n > most:
            raise ValueError(f"--labels {w}: every class must give that many labelled photos, and the smallest "
                             f"class gives at most {most} (after its test and validation photos). Expected "
                             f"1..{most} or 'all'.")
        out.append((w, n))
    return sorted(out, key=lambda c: c[1])


def run_cell(cfg, seed: int, n: int, run_dir: str, pretext_from: str | None) -> dict:
    """The report of one cell's run (trained, resumed or read back)."""
    from ssl_keras import rundir

    report_path = os.path.join(run_dir, "report.json")
    if not os.path.exists(report_path):
        cfg = config_lib.override(cfg, {"seed": seed, "data": {"labels_per_class": n}})
        experiment.prepare(cfg)
        run = rundir.Run(cfg, run_dir, resume=True, verbose=0, log=lambda *a: print(*a, flush=True))
        if pretext_from:
            rundir.copy_stage(pretext_from, run, "pretext")
        experiment.run_stages(run, STAGES)
    with open(report_path) as f:
        return json.load(f)


def _matmul(run_dir: str) -> list[float]:
    """The float32 matmul rates (GFLOP/s) a cell's run measured at its start and end (its speed.json)."""
    path = os.path.join(run_dir, "speed.json")
    return list(files.read_json(path)["matmul_gflops"].values()) if os.path.exists(path) else []


def columns(cfg) -> list[tuple[str, str]]:
    """(report key, label) of the table's columns: the article's classifiers, the method's, the pick."""
    from ssl_keras import rundir

    cols = [(e.key, e.label) for e in rundir.classifiers(cfg)]
    return cols + [("best", "picked by validation")]


def summarise(results: dict, counts, seeds, cols) -> list[dict]:
    """Per label count and column: (mean, std, [per seed]) of the test accuracy over the finished seeds."""
    table = []
    for name, n in counts:
        row = {"labels": name, "n": n}
        for key, _ in cols:
            vals = [c[key]["test_accuracy"] for s in seeds if (c := results["cells"].get(f"seed{s}/L{name}"))
                    and c.get(key)]
            row[key] = (statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, vals) \
                if vals else None
        table.append(row)
    return table


def baseline_labels_for(acc: float, table) -> str:
    """Labels per class the baseline needs for accuracy `acc` (log-linear between measured points)."""
    pts = [(r["n"], r["baseline"][0]) for r in table if r["baseline"]]
    if not pts:
        return "-"
    if acc <= pts[0][1]:
        return f"≤{pts[0][0]}"
    for (n0, a0), (n1, a1) in zip(pts, pts[1:]):
        if a0 < acc <= a1:
            t = (acc - a0) / (a1 - a0)
            return f"~{math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0))):.0f}"
    return f">{pts[-1][0]}" if acc > max(a for _, a in pts) else "-"


def report(results: dict, counts, seeds, cols, command: str, host: str, md_path: str, plot_path: str) -> str:
    from ssl_keras import plots

    s = results["settings"]
    table = summarise(results, counts, seeds, cols)
    rates = [r for c in results["cells"].values() for r in c.get("matmul_gflops", [])]

    def cell(v):
        return "-" if v is None else f"{100 * v[0]:.1f} ± {100 * v[1]:.1f}"

    stopping = f"early stopping patience {s['patience']}" if s["patience"] else "no early stopping"
    matched = [(k, label) for k, label in cols if k in ("ssl", "best")]
    lines = [
        f"Preset `{s['preset']}`, method {', '.join(s['method'])}: {s['image_size']} px, {s['num_classes']} breeds, "
        f"{s['n_test']} test photos (the same for every label count), {s['n_val']} validation photos, seeds {seeds}; "
        f"labelled stages up to {s['epochs']} epochs ({stopping}), rotation task {s['pretext_epochs']} epochs.",
        "",
        "Each cell is a whole run of `python -m ssl_keras.run` at that label count; one rotation model per seed "
        "(trained at the smallest count, copied to the others). Test accuracy, mean ± std over seeds (%); the last "
        "columns: the labels per class the baseline needs for the same accuracy (log-linear between counts):",
        "",
        "| labels per class | " + " | ".join(label for _, label in cols) + " | "
        + " | ".join(f"baseline labels for {label}" for _, label in matched) + " |",
        "|---:|" + "---:|" * (len(cols) + len(matched)),
    ]
    for r in table:
        label = r["labels"] if r["labels"] != "all" else f"all ({r['n']})"
        saved = [baseline_labels_for(r[k][0], table) if r[k] else "-" for k, _ in matched]
        lines.append(f"| {label} | " + " | ".join(cell(r[k]) for k, _ in cols) + " | " + " | ".join(saved) + " |")
    lines += [
        "",
        "RotNet on CIFAR-10 (Gidaris et al., ICLR 2018, semi-supervised; NIN RotNet trained on all 50,000 "
        "training images, then a classifier trained with the labelled subset on its feature maps):",
        "",
        "| labels per class | from scratch | with rotation pretraining |",
        "|---:|---:|---:|",
    ] + [f"| {n} | {b:.1f} | {r:.1f} |" for n, (r, b) in ROTNET_CIFAR10.items()] + [
        "",
        f"Wall time: {sum(c.get('wall_s', 0) for c in results['cells'].values()) / 60:.0f} min for "
        f"{len(results['cells'])} runs" + (f", float32 matmul {min(rates):.0f}-{max(rates):.0f} GFLOP/s measured in "
                                           "them." if rates else "."),
        "",
        f"Command: `{command}`",
        f"Machine: {host}.",
        f"Plot: `{os.path.relpath(os.path.abspath(plot_path), REPO)}`.",
    ]
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(md_path)), exist_ok=True)
    with open(md_path, "w") as f:
        f.write(text)
    done = [r for r in table if all(r[k] for k, _ in cols)]
    if done:
        os.makedirs(os.path.dirname(os.path.abspath(plot_path)), exist_ok=True)
        plots.curves([r["n"] for r in done], {label: ([r[k][0] for r in done], [r[k][1] for r in done])
                                              for k, label in cols},
                     plot_path, "labelled photos per class (log scale)", "test accuracy (%)",
                     f"Label efficiency, {s['num_classes']} breeds, mean ± std over {len(seeds)} seed(s)")
    return text


def _save(path: str, data: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    files.write_json(path, data)


def main(argv=None) -> int:
    args = _parse(argv)
    from ssl_keras import quiet

    quiet.import_tensorflow()
    from ssl_keras import sources, split as split_lib

    try:
        cfg = base_config(args)
        d = cfg.data
        source = sources.open_source(d)
        records = source.records()
        classes = split_lib.choose_classes(records, d.classes, d.num_classes)
        counts = label_counts(args.labels, max_labels(records, classes, d.val_per_class, d.test_fraction))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    started = time.time()
    command = "python benchmarks/label_efficiency.py " + " ".join(argv if argv is not None else sys.argv[1:])
    host = machine()
    cols = columns(cfg)
    settings = {"preset": cfg.preset, "method": list(cfg.method), "image_size": d.image_size,
                "num_classes": len(classes), "epochs": cfg.baseline.epochs, "patience": cfg.baseline.patience,
                "pretext_epochs": cfg.pretext.epochs, "config": config_lib.to_dict(cfg)}
    json_path = os.path.join(args.out_dir, "label_efficiency.json")
    results = {"settings": settings, "cells": {}}
    if os.path.exists(json_path):
        with open(json_path) as f:
            old = json.load(f)
        if {k: v for k, v in old["settings"].items() if k not in ("n_test", "n_val")} != settings:
            print(f"error: {json_path} holds results made with other settings. Pass another --out-dir, or delete "
                  "the file to start over.", file=sys.stderr)
            return 2
        results = old
    md_path = os.path.join(args.out_dir, "label_efficiency.md")
    for seed in args.seeds:
        first = os.path.join(args.work_dir, f"seed{seed}", f"L{counts[0][0]}")
        for name, n in counts:
            key = f"seed{seed}/L{name}"
            if key in results["cells"]:
                continue
            t = time.time()
            run_dir = os.path.join(args.work_dir, f"seed{seed}", f"L{name}")
            rep = run_cell(cfg, seed, n, run_dir, None if run_dir == first else first)
            results["settings"].update(n_test=rep["counts"]["test"], n_val=rep["counts"]["val"])
            results["cells"][key] = {k: rep[k] for k, _ in cols if k in rep}
            results["cells"][key].update(labels_per_class=n, wall_s=round(time.time() - t, 1),
                                         matmul_gflops=_matmul(run_dir))
            _save(json_path, results)
            print(f"  {key}: " + ", ".join(f"{k} {rep[k]['test_accuracy']:.3f}" for k, _ in cols if k in rep),
                  flush=True)
        report(results, counts, args.seeds, cols, command, host, md_path, args.plot)
    text = report(results, counts, args.seeds, cols, command, host, md_path, args.plot)
    print("\n" + text + f"\nWritten to {md_path} and {args.plot} ({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
