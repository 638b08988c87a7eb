"""A benchmark's `--image-size` reaches what it measures and the command it prints (tiny sizes, seconds)."""

from conftest import load_benchmark


def test_pipeline_benchmark_measures_and_prints_the_image_size(dogs_dir, tmp_path):
    out = tmp_path / "pipeline.md"
    bench = load_benchmark("bench_pipeline")
    assert bench.main(["--data-dir", dogs_dir, "--preset", "tiny", "--image-size", "40", "--photos", "32",
                       "--train-steps", "1", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("Preset `tiny`: 40 px")
    assert "Command: `python benchmarks/bench_pipeline.py --preset tiny --image-size 40 --photos 32" in text


def test_best_vs_final_scores_the_last_epoch_on_the_test_photos(dogs_dir, tmp_path):
    """A last-epoch model that always says the first class scores exactly that class's share of the test photos."""
    import json

    import numpy as np

    from ssl_keras import config as config_lib
    from ssl_keras import data, models

    records = data.ImageFolder(dogs_dir).records()
    classes = sorted({r.label for r in records})[:2]
    records = [r for r in records if r.label in classes]
    test = [[r.key, classes.index(r.label)] for r in records[:3] + records[-2:]]
    cfg = config_lib.tiny()
    run = tmp_path / "run"
    (run / "baseline").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(config_lib.to_dict(
        config_lib.override(cfg, {"data": {"data_dir": dogs_dir}}))))
    (run / "split.json").write_text(json.dumps({"test": test, "classes": classes}))
    model = models.build_classifier(cfg.model, cfg.data.image_size, 2)
    head = model.get_layer("breed")
    head.set_weights([np.zeros_like(head.kernel), np.array([10.0, -10.0], "float32")])
    model.save(run / "baseline" / "final.keras")
    (run / "baseline" / "test_metrics.json").write_text('{"accuracy": 0.25}')

    out = tmp_path / "table.md"
    assert load_benchmark("best_vs_final").main([str(run), "--out", str(out)]) == 0
    share = 100 * sum(label == 0 for _, label in test) / len(test)
    assert f"| {run} | baseline | 25.0 | {share:.1f} |" in out.read_text()


def test_label_efficiency_report_states_the_stopping_rule_and_the_labels_saved(tmp_path):
    """The table says "no early stopping" for patience 0, and interpolates the baseline's labels on a log scale."""
    bench = load_benchmark("label_efficiency")
    acc = {"baseline": (0.2, 0.4), "ssl_frozen": (0.1, 0.2), "ssl_finetuned": (0.3, 0.5)}
    results = {"pretext": {"seed0": {"val_accuracy": 0.7, "wall_s": 60}},
               "cells": {f"seed0/L{n}/{m}": {"test_accuracy": a[i], "wall_s": 60}
                         for m, a in acc.items() for i, n in enumerate((10, 100))}}
    settings = {"preset": "quick", "image_size": 64, "filters": [16], "num_classes": 10, "n_test": 1000,
                "epochs": 60, "pretext_epochs": 12, "pool": 9000}
    for patience, said in ((0, "(no early stopping)"), (10, "(early stopping patience 10)")):
        results["settings"] = {**settings, "patience": patience}
        text = bench.report(results, [("10", 10), ("100", 100)], [0], "cmd", "host", str(tmp_path / "t.md"),
                            str(tmp_path / "t.png"))
        assert f"labelled stages up to 60 epochs {said}, rotation task 12 epochs on 9000 photos" in text
    # fine-tuned 30 % at 10 labels: half-way from 20 % (10 labels) to 40 % (100 labels) on a log scale -> ~32
    assert "| 10 | 20.0 ± 0.0 | 10.0 ± 0.0 | 30.0 ± 0.0 | ~32 |" in text
    assert "| 100 | 40.0 ± 0.0 | 20.0 ± 0.0 | 50.0 ± 0.0 | >100 |" in text
    assert (tmp_path / "t.png").exists()
