"""The baseline and the shipped classifier of finished runs, scored again on every test photo of their classes.

    python research/full_test.py 'models/round13/results-*/seed*' --out /tmp/full_test.md

Answers: how much of one run's gain is the noise of its test photos? `quick` scored 100 test photos a class
(`data.max_test_per_class`; 1,000 in all for ImageWoof) until it scored them all; the cap leaves the rest of the
split as it was, so the same trained classifiers can be scored on all of the source's declared test photos (2,924
for ImageWoof). For each
run it prints the test accuracy of the baseline and of the classifier the run shipped (`report.json` `best`) on
the run's own test photos (checked against `report.json`) and on all of them, and the gain on all of them with
its 95 % interval (paired: the mean and standard error of the per-photo difference).
"""

import argparse
import glob
import math
import os
import shlex
import statistics
import sys


def full_test(source, split: dict, skipped: list) -> list:
    """[[key, class index], ...] of every declared test photo of the split's classes, the skipped ones left out."""
    classes, bad = split["classes"], set(skipped)
    return [[r.key, classes.index(r.label)] for r in source.records()
            if r.label in classes and r.declared == "test" and r.key not in bad]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", help="finished run directories, or quoted globs of them")
    p.add_argument("--out", required=True, help="the markdown file to write")
    p.add_argument("--json", help="also write each run's accuracies on all test photos here (for "
                   "`benchmarks/gain_vs_budget.py --test-scores`)")
    args = p.parse_args(argv)
    from ssl_keras import quiet

    quiet.import_tensorflow()
    import numpy as np

    from ssl_keras import config as config_lib
    from ssl_keras import data, models, sources
    from ssl_keras.files import read_json as read
    from ssl_keras.files import write_json, write_text

    run_dirs = sorted({d for pattern in args.run_dirs for d in (glob.glob(pattern) or [pattern])})
    photos: dict = {}  # (source, image size) -> (keys, pixels, labels)
    rows, by_case, scores = [], {}, {}
    for run_dir in run_dirs:
        if not os.path.exists(os.path.join(run_dir, "report.json")):
            raise SystemExit(f"No report.json in {run_dir!r}: not a finished run directory.")
        d = config_lib.from_dict(read(os.path.join(run_dir, "config.json"))).data
        split, report = read(os.path.join(run_dir, "split.json")), read(os.path.join(run_dir, "report.json"))
        skipped = read(os.path.join(run_dir, "skipped.json"))["files"]
        key = (split["source"], d.image_size)
        if key not in photos:
            source = sources.open_source(d)
            items = full_test(source, split, skipped)
            ds = data.labelled_dataset(source, items, d.image_size, 256)
            xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
            photos[key] = ([k for k, _ in items], np.concatenate(xs), np.concatenate(ys))
        keys, xs, ys = photos[key]
        index = {k: i for i, k in enumerate(keys)}
        missing = [k for k, _ in split["test"] if k not in index]
        if missing:
            raise SystemExit(f"{run_dir}: {len(missing)} of its test photos are not declared test photos "
                             f"(e.g. {missing[0]!r}); this script needs a source that declares its test split.")
        own = np.array([index[k] for k, _ in split["test"]])
        correct = {}
        for name in ("baseline", report["best"]["dir"]):
            probs = np.asarray(models.load(os.path.join(run_dir, name, "best.keras")).predict(xs, 256, verbose=0))
            correct[name] = probs.argmax(axis=1) == ys
            reported = read(os.path.join(run_dir, name, "test_metrics.json"))["accuracy"]
            if abs(correct[name][own].mean() - reported) > 0.002:
                raise SystemExit(f"{run_dir}/{name}: {correct[name][own].mean():.4f} on its own test photos here, "
                                 f"{reported:.4f} in test_metrics.json: not the same classifier or photos.")
        base, best = correct["baseline"], correct[report["best"]["dir"]]
        diff = best.astype(float) - base
        gain_own = 100 * (best[own].mean() - base[own].mean())
        gain, half = 100 * diff.mean(), 196 * diff.std(ddof=1) / math.sqrt(len(diff))
        case = os.path.dirname(os.path.normpath(run_dir))
        by_case.setdefault(case, []).append((gain_own, gain))
        scores[os.path.normpath(run_dir)] = {"baseline": float(base.mean()), "shipped": float(best.mean()),
                                             "photos": len(diff)}
        rows.append(f"| {run_dir} | {report['seed']} | {report['best']['dir']} | {100 * base[own].mean():.1f} | "
                    f"{100 * best[own].mean():.1f} | {gain_own:+.1f} | {100 * base.mean():.1f} | "
                    f"{100 * best.mean():.1f} | **{gain:+.1f}** ({gain - half:+.1f} to {gain + half:+.1f}) |")
        print(rows[-1], flush=True)
    n_own = len(read(os.path.join(run_dirs[0], "split.json"))["test"])
    lines = [f"Command: `python research/full_test.py {' '.join(shlex.quote(a) for a in (argv or sys.argv[1:]))}`",
             "",
             f"Test accuracy (%) of the baseline and the shipped classifier on each run's own test photos ({n_own} in "
             f"the first run) and on every declared test photo of its classes ({len(photos[key][0])}); the last "
             "column's interval: 95 %, paired over those photos.",
             "",
             "| run | seed | shipped | baseline, own test | shipped, own test | gain, own test | baseline, all "
             "test | shipped, all test | gain, all test (95 %) |",
             "|---|---:|---|---:|---:|---:|---:|---:|---|", *rows, "",
             "| case | runs | gain, own test: mean (range) | +5 or more | gain, all test: mean (range) | +5 or more |",
             "|---|---:|---|---:|---|---:|"]
    for case, gains in by_case.items():
        own_g, all_g = zip(*gains)
        lines.append(f"| {case} | {len(gains)} | {statistics.mean(own_g):+.1f} ({min(own_g):+.1f} to "
                     f"{max(own_g):+.1f}) | {sum(g >= 5 for g in own_g)} | {statistics.mean(all_g):+.1f} "
                     f"({min(all_g):+.1f} to {max(all_g):+.1f}) | {sum(g >= 5 for g in all_g)} |")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    write_text(args.out, "\n".join(lines) + "\n")
    if args.json:
        write_json(args.json, scores)
    print("\n".join(lines[-(len(by_case) + 2):]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
