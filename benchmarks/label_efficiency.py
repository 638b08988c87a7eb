"""Test accuracy against labels per class: how many labels does rotation pretraining save?

    python benchmarks/label_efficiency.py --preset quick                 # the whole sweep (hours on 2 cores)
    python benchmarks/label_efficiency.py --preset quick --labels 5 10 --seeds 0 --epochs 1 \\
        --pretext-epochs 1 --max-unlabelled 200 --max-test-per-class 10  # a smoke run, about a minute

Protocol. For each seed, one seeded split fixes the test photos (the same for every
label count) and the order of each class's other photos; `labels_per_class = L` takes
the first L of them (so the 5 labels are among the 10, and so on) and the next
`val_per_class` for validation. ONE rotation model per seed is trained on the pool of
every photo outside the test split (labelled ones included, their labels unused;
capped by `--max-unlabelled`), as RotNet pretrains once on all training images, and
is reused for every label count. Then for each L, three classifiers train on the L
labels: from scratch (baseline), on the frozen pretrained backbone (SSL frozen), and
on the pretrained backbone fine-tuned (SSL fine-tuned, `freeze` of the preset), each
with the project's `train.fit` and scored on the test photos from its best validation
epoch. "all" is the largest L that every class can give.

Resumable: finished cells are read back from the results JSON and skipped (the JSON
records the settings; a run with other settings stops rather than mixing them).
Writes `<out-dir>/label_efficiency.json`, `<out-dir>/label_efficiency.md` (mean ±
std over seeds, beside RotNet's CIFAR-10 numbers) and `--plot` (default
`docs/label_efficiency.png`). Checkpoints go to `--work-dir` (default
`models/label_efficiency`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import machine  # noqa: E402

METHODS = (("baseline", "baseline (from scratch)"), ("ssl_frozen", "SSL, backbone frozen"),
           ("ssl_finetuned", "SSL, fine-tuned"))
DEFAULT_LABELS = ("5", "10", "25", "57", "100", "250", "all")
# Gidaris, Singh & Komodakis, "Unsupervised Representation Learning by Predicting Image Rotations",
# ICLR 2018, semi-supervised CIFAR-10 (labels per class -> test accuracy %).
ROTNET_CIFAR10 = {20: (64.6, 33.7), 100: (75.3, 47.3)}


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.path.join(REPO, "..", "shared", "data", "dogs"),
                   help="ImageFolder of photos (default: <repo>/../shared/data/dogs)")
    p.add_argument("--preset", default="quick", help="config preset: model, image size, epochs (default quick)")
    p.add_argument("--labels", nargs="+", default=list(DEFAULT_LABELS),
                   help="labels per class to try; 'all' = as many as every class has (default: %(default)s)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, help="epochs of the labelled stages (default: the preset's)")
    p.add_argument("--patience", type=int,
                   help="early-stopping patience of the labelled stages (default: the preset's)")
    p.add_argument("--pretext-epochs", type=int, help="epochs of the rotation task (default: the preset's)")
    p.add_argument("--max-unlabelled", type=int, help="cap on the rotation pool (default: the preset's; 0: all)")
    p.add_argument("--max-test-per-class", type=int, help="cap on test photos per class (default: the preset's)")
    p.add_argument("--out-dir", default=os.path.join(REPO, "benchmarks", "results"))
    p.add_argument("--plot", default=os.path.join(REPO, "docs", "label_efficiency.png"))
    p.add_argument("--work-dir", default=os.path.join(REPO, "models", "label_efficiency"),
                   help="checkpoints of every cell (default: models/label_efficiency)")
    p.add_argument("--verbose", type=int, default=0, help="Keras fit verbosity (0, 1 or 2)")
    return p.parse_args(argv)


def resolve_config(args):
    """The preset with the command line's caps applied (checked by `ssl_keras.config`)."""
    from ssl_keras import config as config_lib

    cfg = config_lib.preset(args.preset)
    values = {"data": {}}
    for key in ("epochs", "patience"):
        if getattr(args, key) is not None:
            for stage in ("baseline", "finetune"):
                values.setdefault(stage, {})[key] = getattr(args, key)
    if args.pretext_epochs is not None:
        values["pretext"] = {"epochs": args.pretext_epochs}
    if args.max_unlabelled is not None:
        values["data"]["max_unlabelled"] = args.max_unlabelled
    if args.max_test_per_class is not None:
        values["data"]["max_test_per_class"] = args.max_test_per_class
    values["data"]["data_dir"] = os.path.abspath(args.data_dir)
    return config_lib.override(cfg, values)


def max_labels(records, classes, val_per_class: int, test_fraction: float) -> int:
    """The largest `labels_per_class` that every class in `classes` can give (what `data.make_split` accepts)."""
    out = []
    for cls in classes:
        recs = [r for r in records if r.label == cls]
        rest = sum(r.declared != "test" for r in recs)
        if not any(r.declared == "test" for r in recs):
            rest -= max(1, round(rest * test_fraction))
        out.append(rest - val_per_class)
    return min(out)


def label_counts(wanted, most: int) -> list[tuple[str, int]]:
    """("5", 5), ..., ("all", most); counts above `most` are an error."""
    out = []
    for w in wanted:
        n = most if w == "all" else int(w)
        if n < 1 or n > most:
            raise ValueError(f"--labels {w}: every class must give that many labelled photos, and the smallest "
                             f"class gives at most {most} (after its test and validation photos). Expected "
                             f"1..{most} or 'all'.")
        out.append((w, n))
    return out


def split_for(records, classes, d, labels_per_class: int, seed: int) -> dict:
    from ssl_keras import data

    return data.make_split(records, classes, labels_per_class=labels_per_class, val_per_class=d.val_per_class,
                           test_fraction=d.test_fraction, max_test_per_class=d.max_test_per_class,
                           max_unlabelled=0, seed=seed)


def pretext_pool(split: dict, max_unlabelled: int, seed: int) -> tuple[list[str], list[str]]:
    """(train, validation) keys for the rotation task: every photo outside the test split, seeded, capped."""
    pool = sorted({k for k, _ in split["labelled"]} | {k for k, _ in split["val"]}
                  | set(split["unlabelled"]) | set(split["unlabelled_val"]))
    rng = random.Random(seed)
    if max_unlabelled and len(pool) > max_unlabelled:
        pool = sorted(rng.sample(pool, max_unlabelled))
    rng.shuffle(pool)
    n_val = min(1000, len(pool) // 10)
    return sorted(pool[n_val:]), sorted(pool[:n_val])


class Results:
    """The results JSON: settings, pretext runs and cells, written atomically after every change."""

    def __init__(self, path: str, settings: dict):
        self.path = path
        self.data = {"settings": settings, "pretext": {}, "cells": {}}
        if os.path.exists(path):
            with open(path) as f:
                old = json.load(f)
            if old.get("settings") != settings:
                raise ValueError(f"{path} holds results made with other settings:\n  {old.get('settings')}\n"
                                 f"Expected:\n  {settings}\n"
                                 "Pass another --out-dir, or delete the file to start over.")
            self.data = old

    def save(self):
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1)
        os.replace(tmp, self.path)


def train_pretext(cfg, source, keys, val_keys, seed: int, stage_dir: str, verbose: int):
    """The seed's rotation model (best validation epoch), trained once and then loaded from `stage_dir`."""
    import keras

    from ssl_keras import data, models, train

    d = cfg.data
    keras.utils.set_random_seed(seed)
    train_ds = data.pretext_dataset(source, keys, d.image_size, d.batch_size, training=True, stage=cfg.pretext,
                                    seed=seed)
    val_ds = data.pretext_dataset(source, val_keys, d.image_size, d.batch_size)
    model = models.build_rotation_model(cfg.model, d.image_size)
    hist = train.fit(model, train_ds, val_ds, cfg.pretext, stage_dir,
                     steps_per_epoch=math.ceil(len(keys) / d.batch_size), verbose=verbose)
    return max(hist.get("val_accuracy", [0.0])), len(hist.get("loss", []))


def train_cell(cfg, method: str, n_classes: int, pretext, labelled_ds, val_ds, test_ds, n_labelled: int,
               seed: int, stage_dir: str, classes, verbose: int) -> dict:
    """One classifier on the labelled photos; its test metrics from the best validation epoch."""
    import keras

    from ssl_keras import evaluate, models, train, transfer

    keras.utils.set_random_seed(seed)
    stage = cfg.baseline if method == "baseline" else cfg.finetune
    freeze = "all" if method == "ssl_frozen" else cfg.freeze
    model = models.build_classifier(cfg.model, cfg.data.image_size, n_classes, frozen_backbone=(freeze == "all"))
    copied = 0
    if method != "baseline":
        copied = transfer.copy_backbone(pretext, model)
        transfer.set_frozen(model, freeze)
    hist = train.fit(model, labelled_ds, val_ds, stage, stage_dir,
                     steps_per_epoch=math.ceil(n_labelled / cfg.data.batch_size), verbose=verbose)
    best = keras.models.load_model(os.path.join(stage_dir, "best.keras"))
    probs, labels = evaluate.predict_dataset(best, test_ds)
    m = evaluate.metrics(probs, labels, classes)
    return {"test_accuracy": m["accuracy"], "top3_accuracy": m["top3_accuracy"], "n_test": m["n"],
            "epochs": len(hist.get("loss", [])), "best_val_accuracy": max(hist.get("val_accuracy", [0.0])),
            "weights_copied": copied, "freeze": freeze if method != "baseline" else "none"}


def summarise(results: dict, counts, seeds) -> list[dict]:
    """Per label count and method: (mean, std, [per seed]) of the test accuracy over the finished seeds."""
    cells, table = results["cells"], []
    for name, n in counts:
        row = {"labels": name, "n": n}
        for method, _ in METHODS:
            vals = [cells[k]["test_accuracy"] for s in seeds if (k := f"seed{s}/L{name}/{method}") in cells]
            row[method] = (statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, vals) \
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


def _shown(path: str) -> str:
    """`path` relative to the repository when it is inside it."""
    rel = os.path.relpath(os.path.abspath(path), REPO)
    return path if rel.startswith("..") else rel


def report(results: dict, counts, seeds, command: str, host: str, md_path: str, plot_path: str) -> str:
    from ssl_keras import plots

    s = results["settings"]
    table = summarise(results, counts, seeds)

    def cell(v):
        return "-" if v is None else f"{100 * v[0]:.1f} ± {100 * v[1]:.1f}"

    pre = [v for k, v in sorted(results["pretext"].items())]
    stopping = f"early stopping patience {s['patience']}" if s["patience"] else "no early stopping"
    lines = [
        f"Preset `{s['preset']}`: {s['image_size']} px, filters {s['filters']}, {s['num_classes']} breeds, "
        f"{s['n_test']} test photos (the same for every label count), seeds {seeds}; labelled stages up to "
        f"{s['epochs']} epochs ({stopping}), rotation task {s['pretext_epochs']} epochs "
        f"on {s['pool']} photos.",
        "",
        "Protocol: one rotation model per seed, trained once on every photo outside the test split (the labelled "
        "ones too, without their labels; RotNet likewise pretrains once on all training images), reused for every "
        "label count. For each count, three classifiers train on the same labelled photos and are scored on the "
        "test photos from their best validation epoch. Test accuracy, mean ± std over seeds (%):",
        "",
        "| labels per class | baseline (from scratch) | SSL, backbone frozen | SSL, fine-tuned | "
        "baseline labels for the fine-tuned accuracy |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        label = r["labels"] if r["labels"] != "all" else f"all ({r['n']})"
        saved = baseline_labels_for(r["ssl_finetuned"][0], table) if r["ssl_finetuned"] else "-"
        lines.append(f"| {label} | {cell(r['baseline'])} | {cell(r['ssl_frozen'])} | {cell(r['ssl_finetuned'])} "
                     f"| {saved} |")
    lines += [
        "",
        "RotNet on CIFAR-10 (Gidaris et al., ICLR 2018, semi-supervised; NIN RotNet trained on all 50,000 "
        "training images, then a classifier trained with the labelled subset on its feature maps):",
        "",
        "| labels per class | from scratch | with rotation pretraining |",
        "|---:|---:|---:|",
    ] + [f"| {n} | {b:.1f} | {r:.1f} |" for n, (r, b) in ROTNET_CIFAR10.items()] + [
        "",
        "Rotation task, best validation accuracy per seed: "
        + (", ".join(f"{100 * p['val_accuracy']:.1f}%" for p in pre) or "-") + ".",
        f"Wall time: {sum(c.get('wall_s', 0) for c in results['cells'].values()) / 60:.0f} min for "
        f"{len(results['cells'])} classifiers, {sum(p.get('wall_s', 0) for p in pre) / 60:.0f} min for "
        f"{len(pre)} rotation model(s).",
        "",
        f"Command: `{command}`",
        f"Machine: {host}.",
        f"Plot: `{_shown(plot_path)}`.",
    ]
    text = "\n".join(lines) + "\n"
    with open(md_path, "w") as f:
        f.write(text)
    done = [r for r in table if all(r[m] for m, _ in METHODS)]
    if done:
        os.makedirs(os.path.dirname(os.path.abspath(plot_path)), exist_ok=True)
        plots.curves([r["n"] for r in done], {label: ([r[m][0] for r in done], [r[m][1] for r in done])
                                              for m, label in METHODS},
                     plot_path, "labelled photos per class (log scale)", "test accuracy (%)",
                     f"Label efficiency, {s['num_classes']} breeds, mean ± std over {len(seeds)} seed(s)")
    return text


def main(argv=None) -> int:
    args = _parse(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        cfg = resolve_config(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not os.path.isdir(cfg.data.data_dir):
        print(f"error: no photos at {cfg.data.data_dir!r}. Expected an ImageFolder of dog photos (one sub-folder "
              "per breed), by default <repo>/../shared/data/dogs; pass --data-dir.", file=sys.stderr)
        return 2
    from ssl_keras import data

    started = time.time()
    command = "python benchmarks/label_efficiency.py " + " ".join(argv if argv is not None else sys.argv[1:])
    host = machine()
    d = cfg.data
    source = data.open_source(d.data_dir, d.tfds_name)
    records = source.records()
    good, bad = data.scan_images(source, [r.key for r in records])
    good = set(good)
    records = [r for r in records if r.key in good]
    classes = data.choose_classes(records, d.classes, d.num_classes)
    try:
        counts = label_counts(args.labels, max_labels(records, classes, d.val_per_class, d.test_fraction))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    most = max(n for _, n in counts)
    first = split_for(records, classes, d, most, args.seeds[0])
    settings = {"preset": cfg.preset, "image_size": d.image_size, "filters": list(cfg.model.filters),
                "convs_per_block": cfg.model.convs_per_block, "num_classes": len(classes), "classes": classes,
                "epochs": cfg.baseline.epochs, "finetune_epochs": cfg.finetune.epochs,
                "patience": cfg.baseline.patience, "pretext_epochs": cfg.pretext.epochs, "freeze": cfg.freeze,
                "max_unlabelled": d.max_unlabelled, "max_test_per_class": d.max_test_per_class,
                "n_test": len(first["test"]), "skipped_photos": len(bad),
                "pool": len(pretext_pool(first, d.max_unlabelled, args.seeds[0])[0])}
    try:
        results = Results(os.path.join(args.out_dir, "label_efficiency.json"), settings)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{len(records)} photos, classes {classes}; label counts {[n for _, n in counts]}; seeds {args.seeds}; "
          f"{host}", flush=True)
    md_path = os.path.join(args.out_dir, "label_efficiency.md")

    for seed in args.seeds:
        todo = [(name, n, m) for name, n in counts for m, _ in METHODS
                if f"seed{seed}/L{name}/{m}" not in results.data["cells"]]
        if not todo:
            continue
        import keras

        seed_dir = os.path.join(args.work_dir, f"seed{seed}")
        pre_dir = os.path.join(seed_dir, "pretext")
        split = split_for(records, classes, d, most, seed)
        test_items = split["test"]
        if f"seed{seed}" not in results.data["pretext"] or not os.path.exists(os.path.join(pre_dir, "best.keras")):
            keys, val_keys = pretext_pool(split, d.max_unlabelled, seed)
            print(f"\n[seed {seed}] rotation task on {len(keys)} photos ({4 * len(keys)} samples an epoch), "
                  f"{len(val_keys)} for validation", flush=True)
            t = time.time()
            val_acc, epochs = train_pretext(cfg, source, keys, val_keys, seed, pre_dir, args.verbose)
            results.data["pretext"][f"seed{seed}"] = {"val_accuracy": val_acc, "epochs": epochs, "photos": len(keys),
                                                      "wall_s": round(time.time() - t, 1)}
            results.save()
            print(f"[seed {seed}] rotation task: best validation accuracy {val_acc:.3f} "
                  f"({time.time() - t:.0f} s)", flush=True)
        pretext = keras.models.load_model(os.path.join(pre_dir, "best.keras"))
        test_ds = data.labelled_dataset(source, test_items, d.image_size, d.batch_size)
        for name, n in counts:
            methods = [m for (nm, _, m) in todo if nm == name]
            if not methods:
                continue
            split = split_for(records, classes, d, n, seed)
            assert split["test"] == test_items, "the test photos must not depend on the label count"
            labelled = {stage: data.labelled_dataset(source, split["labelled"], d.image_size, d.batch_size,
                                                     training=True, stage=stage, seed=seed)
                        for stage in {cfg.baseline, cfg.finetune}}  # one, when both augment alike
            val = data.labelled_dataset(source, split["val"], d.image_size, d.batch_size)
            for method in methods:
                key = f"seed{seed}/L{name}/{method}"
                t = time.time()
                stage_ds = labelled[cfg.baseline if method == "baseline" else cfg.finetune]
                out = train_cell(cfg, method, len(classes), pretext, stage_ds, val, test_ds, len(split["labelled"]),
                                 seed, os.path.join(seed_dir, f"L{name}", method), classes, args.verbose)
                out.update(labels_per_class=n, n_labelled=len(split["labelled"]), wall_s=round(time.time() - t, 1))
                results.data["cells"][key] = out
                results.save()
                print(f"  {key:28s} test accuracy {out['test_accuracy']:.3f}  ({out['epochs']} epochs, "
                      f"{out['wall_s']:.0f} s)", flush=True)
        report(results.data, counts, args.seeds, command, host, md_path, args.plot)

    text = report(results.data, counts, args.seeds, command, host, md_path, args.plot)
    print("\n" + text + f"\nWritten to {md_path} and {args.plot} ({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
