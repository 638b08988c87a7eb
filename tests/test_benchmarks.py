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
