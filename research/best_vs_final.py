"""Test accuracy of each classifier's best checkpoint (by validation) against its last epoch.

    python research/best_vs_final.py models/results-default/seed0 models/results-default/seed1 --out /tmp/bvf.md

Answers: does keeping the epoch with the best validation accuracy help, or does the choice only follow the
noise of a small validation set? For every evaluated classifier of the given run directories it prints the test
accuracy of `best.keras` (read from its `test_metrics.json`) and of `final.keras` (computed here on the run's
test photos), and each classifier's gap to the baseline both ways.
"""

import argparse
import json
import os
import shlex
import statistics
import sys


def final_accuracy(run_dir: str, name: str, cache: dict) -> float:
    """Test accuracy of `run_dir/name/final.keras` on the run's test photos."""
    from ssl_keras import config as config_lib
    from ssl_keras import data, evaluate, models, sources

    if run_dir not in cache:
        with open(os.path.join(run_dir, "config.json")) as f:
            d = config_lib.from_dict(json.load(f)).data
        with open(os.path.join(run_dir, "split.json")) as f:
            split = json.load(f)
        source = sources.open_source(d)
        cache[run_dir] = (data.labelled_dataset(source, split["test"], d.image_size, d.batch_size), split["classes"])
    test, classes = cache[run_dir]
    probs, labels = evaluate.predict_dataset(models.load(os.path.join(run_dir, name, "final.keras")), test)
    return evaluate.metrics(probs, labels, classes)["accuracy"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", help="finished run directories (evaluate has run)")
    p.add_argument("--out", required=True, help="the markdown file to write")
    args = p.parse_args(argv)
    from ssl_keras import quiet

    quiet.import_tensorflow()
    lines = ["| run | classifier | best checkpoint (test %) | last epoch (test %) |", "|---|---|---|---|"]
    gaps: dict[str, dict[str, list[float]]] = {}
    cache: dict = {}
    for run_dir in args.run_dirs:
        acc = {}
        for name in sorted(os.listdir(run_dir)):
            metrics = os.path.join(run_dir, name, "test_metrics.json")
            if not (os.path.exists(metrics) and os.path.exists(os.path.join(run_dir, name, "final.keras"))):
                continue  # the rotation stage, and classifiers not evaluated
            with open(metrics) as f:
                best = json.load(f)["accuracy"]
            acc[name] = (best, final_accuracy(run_dir, name, cache))
            lines.append(f"| {run_dir} | {name} | {100 * best:.1f} | {100 * acc[name][1]:.1f} |")
        if not acc:
            raise SystemExit(f"No evaluated classifier with a final.keras in {run_dir!r}. Run `evaluate` first.")
        for name, (best, final) in acc.items():
            if name != "baseline" and "baseline" in acc:
                g = gaps.setdefault(name, {"best": [], "final": []})
                g["best"].append(100 * (best - acc["baseline"][0]))
                g["final"].append(100 * (final - acc["baseline"][1]))
    if gaps:
        lines += ["", "| classifier | minus baseline, best checkpoints | minus baseline, last epochs |",
                  "|---|---|---|"]
        for name, g in gaps.items():
            lines.append(f"| {name} | {statistics.mean(g['best']):+.1f} | {statistics.mean(g['final']):+.1f} |")
    lines += ["", f"Command: `python research/best_vs_final.py {shlex.join(sys.argv[1:] if argv is None else argv)}`"]
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
