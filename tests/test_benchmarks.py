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
