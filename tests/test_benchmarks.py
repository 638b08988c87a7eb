"""The benchmark scripts: a benchmark's `--image-size` reaches what it measures and the command it prints (tiny
sizes, seconds); the validation benchmark's rows; the serving fuzz benchmark's table keeps each kind of answer in its
own column."""

import collections

from conftest import load_benchmark


def test_pipeline_benchmark_measures_and_prints_the_image_size(dogs_dir, tmp_path):
    out = tmp_path / "pipeline.md"
    bench = load_benchmark("bench_pipeline")
    assert bench.main(["--data-dir", dogs_dir, "--preset", "tiny", "--image-size", "40", "--photos", "32",
                       "--train-steps", "1", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("Preset `tiny`: 40 px")
    assert "Command: `python benchmarks/bench_pipeline.py --preset tiny --image-size 40 --photos 32" in text


def test_validation_benchmark_times_each_forward_pass_both_ways(tmp_path):
    out = tmp_path / "validation.md"
    bench = load_benchmark("bench_validation")
    assert bench.main(["--preset", "tiny", "--val-photos", "8", "--test-photos", "300", "--repeats", "1",
                       "--out", str(out)]) == 0
    text = out.read_text()
    assert "test scoring: 300 photos" in text
    for row in ("| validation, once an epoch |", "| BatchNorm re-estimation, once an epoch |",
                "| test scoring, once a classifier |"):
        assert row in text
    assert "Command: `python benchmarks/bench_validation.py --preset tiny --val-photos 8 --test-photos 300 " \
           "--repeats 1`" in text
    assert "float32 matmul" in text


def test_the_table_counts_each_kind_of_answer():
    """The benchmark's table: 5xx and INTERNAL/UNKNOWN in their own column, never folded into the 4xx."""
    rest_fuzz = {"status": collections.Counter({200: 2, 400: 5, 408: 1, 500: 1, None: 1}), "latency": [0.001] * 10}
    rest_load = {"status": collections.Counter({200: 6, 404: 2}), "latency": [0.01] * 8, "wrong": 1,
                 "requests_per_s": 80.4}
    grpc_fuzz = {"status": collections.Counter({"OK": 3, "INVALID_ARGUMENT": 4, "UNKNOWN": 1, "INTERNAL": 2}),
                 "latency": [0.002] * 10}
    grpc_load = {"status": collections.Counter({"OK": 7, "NOT_FOUND": 1}), "latency": [0.02] * 8, "wrong": 0,
                 "requests_per_s": 40.0}
    rows = load_benchmark("bench_serving_fuzz").table_rows(rest_fuzz, rest_load, grpc_fuzz, grpc_load, clients=32)
    assert rows[2] == "| REST, fuzz (8 at a time) | 10 | 2 | 6 (400 5, 408 1) | 1 | 1 | - | - | 1.0 | 1.0 |"
    assert rows[3] == "| REST, load (32 clients, 1/4 bad) | 8 | 6 | 2 (404 2) | 0 | 0 | 1 | 80 | 10.0 | 10.0 |"
    assert rows[4] == "| gRPC, fuzz (8 at a time) | 10 | 3 | INVALID_ARGUMENT 4 | 3 | - | - | - | 2.0 | 2.0 |"
    assert rows[5] == "| gRPC, load (32 clients, 1/4 bad) | 8 | 7 | NOT_FOUND 1 | 0 | - | 0 | 40 | 20.0 | 20.0 |"
