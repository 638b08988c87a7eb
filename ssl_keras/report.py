"""report.json, the comparison and example plots, and the summary table a run ends with."""

from __future__ import annotations

import os

from ssl_keras import evaluate
from ssl_keras import rundir
from ssl_keras.classifier_stage import top_scorer
from ssl_keras.rundir import Run, best_classifier, classifiers, read_json, val_score, write_json


def _rounded(value, digits=4):
    """`value` with every float rounded (report.json's figures)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return value


def report(run: Run) -> dict:
    """report.json, the comparison and example plots, and the summary table (printed last)."""
    from ssl_keras import plots

    cfg, split = run.cfg, run.split
    base = run.test_accuracy("baseline")
    report = {
        "preset": cfg.preset, "seed": cfg.seed, "method": list(cfg.method), "classes": run.classes,
        "source": split.get("source"),
        "counts": {"labelled": len(split["labelled"]), "val": len(split["val"]), "test": len(split["test"]),
                   "unlabelled": len(split["unlabelled"]), "unlabelled_val": len(split["unlabelled_val"]),
                   "skipped": split.get("skipped", 0)},
        "pretext": {"val_accuracy": run.stage_info("pretext").get("best_val_accuracy"), **run.stage_info("pretext")},
    }
    if split.get("pool_duplicates") is not None:  # your own photos
        report["counts"].update(pool_from_labelled=split["pool_from_labelled"],
                                pool_duplicates_left_out=len(split["pool_duplicates"]),
                                non_images=split.get("non_images", 0))
    if report["pretext"].get("pretext_from"):
        report["pretext_from"] = report["pretext"]["pretext_from"]
    n_val, n_test = len(split["val"]), len(split["test"])
    rows = []
    for entry in classifiers(cfg):
        info, test = run.stage_info(entry.dir), run.test_accuracy(entry.dir)
        if not info:
            continue
        gap = None if test is None or base is None else round(100 * (test - base), 1)
        report[entry.key] = {"test_accuracy": test, "val_accuracy": info.get("best_val_accuracy"),
                             "gap_points": gap, "label": entry.label, "dir": entry.dir, **info,
                             "test": evaluate.scored(test, n_test),
                             "val": evaluate.scored(info.get("best_val_accuracy"), n_val)}
        rows.append((entry, info, test, gap))
    best = best_classifier(run)
    if best is not None:
        test, top = run.test_accuracy(best.dir), rundir.entry(cfg, top_scorer(run))
        rule = ("the highest validation score" if best.dir == top.dir else
                f"the latest classifier that validation cannot tell from the top scorer ({top.label})")
        report["best"] = {"key": best.key, "method": best.method, "label": best.label, "dir": best.dir,
                          "picked_by": rule, "top_val_key": top.key,
                          "val_accuracy": run.stage_info(best.dir).get("best_val_accuracy"),
                          "val_accuracy_last": val_score(run.stage_info(best.dir)), "test_accuracy": test,
                          "gap_points": None if test is None or base is None else round(100 * (test - base), 1),
                          "test": evaluate.scored(test, n_test), "path": run.path(best.dir, "best.keras")}
    wall_path = run.path("wall_time.json")
    report["wall_time_s"] = read_json(wall_path) if os.path.exists(wall_path) else {}
    if os.path.exists(run.path("export.json")):
        report["export"] = read_json(run.path("export.json"))
    report = _rounded(report)
    write_json(run.path("report.json"), report)
    bars = {entry.label: test for entry, _, test, _ in rows if test is not None}
    if bars:
        counts = report["counts"]
        intervals = {entry.label: report[entry.key]["test"]["interval_95"] for entry, _, test, _ in rows
                     if test is not None}
        plots.comparison(bars, run.path("comparison.png"),
                         f"Test accuracy, {counts['labelled']} labels ({counts['test']} test photos)", intervals)
    if best is not None:
        _prediction_plot(run, run.path(best.dir, "best.keras"))
    run.log("\n" + summary_table(report, rows))
    run.log(f"\nRun directory: {run.dir}  (report.json, comparison.png, */curves.png; "
            f"tensorboard --logdir {run.dir})")
    return report


def _with_interval(scored: dict) -> str:
    """`0.312 [0.29-0.33]`: an accuracy and its 95 % Wilson interval."""
    lo, hi = scored["interval_95"]
    return f"{scored['accuracy']:.3f} [{lo:.2f}-{hi:.2f}]"


def summary_table(report: dict, rows) -> str:
    """The table a run ends with: each classifier's epochs, validation and test accuracy, gap, time.

    Accuracies carry their 95 % Wilson interval on the photo counts of the header; when the best
    classifier's test interval overlaps the baseline's, the table says this test set cannot tell them apart.
    """
    counts = report["counts"]
    lines = [("classifier", "epochs", f"val acc (kept epoch, {counts['val']} photos, 95 %)", "val acc (last 5)",
              f"test acc ({counts['test']} photos, 95 %)", "vs baseline", "wall s")]
    if report["pretext"].get("epochs"):
        p = report["pretext"]
        lines.append(("pretext (rotation task)", str(p["epochs"]), f"{p['val_accuracy']:.3f}",
                      f"{val_score(p):.3f}", "-", "-", f"{p.get('wall_time_s', 0):.0f}"))
    for entry, info, test, gap in rows:
        scores = report[entry.key]
        lines.append((entry.label, str(info.get("epochs")),
                      _with_interval(scores["val"]) if scores["val"]["accuracy"] is not None else "-",
                      f"{val_score(info):.3f}", "-" if test is None else _with_interval(scores["test"]),
                      "-" if gap is None or entry.key == "baseline" else f"{gap:+.1f} pts",
                      f"{info.get('wall_time_s', 0):.0f}"))
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in lines)
    if "best" in report and report["best"]["test_accuracy"] is not None:
        b = report["best"]
        gap = "" if b["gap_points"] is None else f", {b['gap_points']:+.1f} points over the baseline"
        text += (f"\n\nShipped (picked by validation, mean of its last 5 epochs): {b['label']} "
                 f"(val {b['val_accuracy_last']:.3f}; {b['picked_by']}): test accuracy "
                 f"{_with_interval(b['test'])}{gap}.")
        base = report.get("baseline", {}).get("test")
        if b["key"] != "baseline" and base and base["interval_95"]:
            if evaluate.overlap(b["test"]["interval_95"], base["interval_95"]):
                blo, bhi = base["interval_95"]
                text += (f"\nIts 95 % interval overlaps the baseline's ({blo:.2f}-{bhi:.2f}): these "
                         f"{counts['test']} test photos cannot tell the two apart.")
    return text


def _prediction_plot(run: Run, path: str) -> None:
    """prediction.png: the first test photo with its top-k breeds (the article's Figure 8)."""

    from ssl_keras import evaluate as evaluate_lib, models, plots, preprocessing

    key, label = run.split["test"][0]
    image = preprocessing.decode(run.source.read(key)).numpy()
    probs = evaluate_lib.predict_image(models.load(path), image)
    plots.prediction(image, evaluate_lib.top_k(probs, run.classes, run.cfg.top_k), run.path("prediction.png"),
                     f"{os.path.basename(key)}\ntrue: {run.classes[label]}")
