"""Test accuracy of each classifier's best checkpoint (by validation) against its last epoch.

    python benchmarks/best_vs_final.py models/results-pt64-ref/seed0 models/results-pt64-ref/seed1 ...

The `evaluate` stage scores `best.keras`, the epoch with the highest accuracy on the validation photos (200 in
the `default` preset). With so few, that choice is noisy: this prints, for every classifier of the given run
directories, the test accuracy of `best.keras` (read from its `test_metrics.json`) and of `final.keras` (computed
here on the run's test photos), and the SSL-minus-baseline gap each way.
"""

import argparse
import json
import os
import shlex
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import machine, write_table  # noqa: E402


def final_accuracy(run_dir: str, name: str, cache: dict) -> float:
    """Test accuracy of `run_dir/name/final.keras` on the run's test photos."""
    import keras

    from ssl_keras import data, evaluate

    if run_dir not in cache:
        with open(os.path.join(run_dir, "config.json")) as f:
            d = json.load(f)["data"]
        with open(os.path.join(run_dir, "split.json")) as f:
            split = json.load(f)
        source = data.open_source(d["data_dir"], d["tfds_name"])
        cache[run_dir] = (data.labelled_dataset(source, split["test"], d["image_size"], d["batch_size"]),
                          split["classes"])
    test, classes = cache[run_dir]
    probs, labels = evaluate.predict_dataset(keras.models.load_model(os.path.join(run_dir, name, "final.keras")), test)
    return evaluate.metrics(probs, labels, classes)["accuracy"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", help="finished run directories (evaluate has run)")
    p.add_argument("--ssl", default="finetune_1", help="the fine-tuned classifier's directory (finetune_1)")
    p.add_argument("--out", default="results/best-vs-final.md")
    args = p.parse_args(argv)
    lines = ["| run | classifier | best checkpoint (test %) | last epoch (test %) |", "|---|---|---|---|"]
    gaps = {"best": [], "final": []}
    cache = {}
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
        if "baseline" in acc and args.ssl in acc:
            for i, key in enumerate(gaps):
                gaps[key].append(100 * (acc[args.ssl][i] - acc["baseline"][i]))
    if gaps["best"]:
        lines.append("")
        for key, label in (("best", "best checkpoints"), ("final", "last epochs")):
            per_run = ", ".join(f"{g:+.1f}" for g in gaps[key])
            lines.append(f"`{args.ssl}` minus baseline, {label}: {statistics.mean(gaps[key]):+.1f} points on "
                         f"average ({per_run}).")
    command = shlex.join(sys.argv[1:] if argv is None else argv)
    lines += ["", f"Command: `python benchmarks/best_vs_final.py {command}`", f"Machine: {machine()}."]
    write_table(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
