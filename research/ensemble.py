"""Would an average of a run's classifiers beat the one it ships? Validation and test accuracy of each classifier and
of the averages of their probabilities, on finished runs.

    python research/ensemble.py 'models/round1[67]/results-pre5-fm8/seed*' --out results/ensemble/table.md

Inference only, on each run's own validation photos (what a choice would look at) and test photos (only scored),
from its `split.json` and each classifier's `best.keras`. An average is of the softmax probabilities, what one
model holding its members and averaging their outputs would serve (at the members' summed size and time).
"""

import argparse
import glob
import os
import shlex
import statistics
import sys

MEMBERS = {"baseline": ("baseline",), "fine-tuned": ("finetune_1",), "FixMatch": ("fixmatch",),
           "fine-tuned + FixMatch": ("finetune_1", "fixmatch"),
           "baseline + fine-tuned + FixMatch": ("baseline", "finetune_1", "fixmatch")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", help="finished run directories, or quoted globs of them")
    p.add_argument("--out", required=True, help="the markdown file to write")
    args = p.parse_args(argv)
    from ssl_keras import quiet

    quiet.import_tensorflow()

    from ssl_keras import config as config_lib
    from ssl_keras import data, evaluate, files, models, sources

    run_dirs = sorted({d for pattern in args.run_dirs for d in (glob.glob(pattern) or [pattern])})
    acc: dict = {part: {m: [] for m in MEMBERS} for part in ("val", "test")}
    rows = []
    for run_dir in run_dirs:
        d = config_lib.from_dict(files.read_json(os.path.join(run_dir, "config.json"))).data
        split, source = files.read_json(os.path.join(run_dir, "split.json")), sources.open_source(d)
        loaded = {name: models.load(os.path.join(run_dir, name, "best.keras"))
                  for name in {n for names in MEMBERS.values() for n in names}}
        cells = []
        for part in ("val", "test"):
            ds = data.labelled_dataset(source, split[part], d.image_size, 256)
            probs = {}
            for name, model in loaded.items():
                probs[name], labels = evaluate.predict_dataset(model, ds)
            for m, names in MEMBERS.items():
                a = float((sum(probs[n] for n in names).argmax(axis=1) == labels).mean())
                acc[part][m].append(a)
                cells.append(f"{100 * a:.1f}")
        rows.append(f"| {run_dir} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    names = list(MEMBERS)
    lines = [f"Command: `python research/ensemble.py {' '.join(shlex.quote(a) for a in (argv or sys.argv[1:]))}`", "",
             "Accuracy (%) of each classifier and of the averages of their probabilities, on each run's validation "
             "photos, then its test photos:", "",
             "| run | " + " | ".join(f"val: {m}" for m in names) + " | " + " | ".join(f"test: {m}" for m in names)
             + " |", "|---|" + "---:|" * (2 * len(names)), *rows,
             "| **mean** | " + " | ".join(f"**{100 * statistics.mean(acc[part][m]):.1f}**"
                                         for part in ("val", "test") for m in names) + " |", ""]
    for part in ("val", "test"):
        diffs = [100 * (a - b) for a, b in zip(acc[part]["fine-tuned + FixMatch"], acc[part]["FixMatch"])]
        lines.append(f"{part}: fine-tuned + FixMatch minus FixMatch, per run: "
                     + ", ".join(f"{x:+.1f}" for x in diffs) + f" (higher in {sum(x > 0 for x in diffs)} of "
                     f"{len(diffs)})")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    files.write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines[-3:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
