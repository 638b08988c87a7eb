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


def test_first_command_reads_a_finished_seed_back_and_counts_its_minutes_without_the_export(tmp_path, capsys):
    """A seed whose log holds the command's end is not run again; its row comes from the log and the run's files."""
    import json

    models, run = tmp_path / "slow", tmp_path / "slow" / "seed1"
    run.mkdir(parents=True)
    files = {
        "speed.json": {"matmul_gflops": {"start": 48.0, "end": 47.2},
                       "fits": {"baseline": {"of_matmul": 0.51}, "pretext": {"of_matmul": 0.66},
                                "finetune_1": {"of_matmul": 0.55}, "fixmatch": {"of_matmul": 0.6}}},
        "wall_time.json": {"baseline": 66.0, "pretext": 330.0, "finetune": 70.0, "methods": 240.0, "evaluate": 14.0,
                           "export": 180.0},
        "config.json": {"baseline": {"epochs": 41}, "pretext": {"epochs": 5}, "finetune": {"epochs": 46},
                        "fixmatch": {"train": {"epochs": 8}}},
        "report.json": {"baseline": {"test": {"accuracy": 0.3, "photos": 2924, "interval_95": [0.283, 0.317]}},
                        "best": {"label": "FixMatch", "gap_points": 6.2,
                                 "test": {"accuracy": 0.362, "photos": 2924, "interval_95": [0.345, 0.38]}}},
    }
    for name, content in files.items():
        (run / name).write_text(json.dumps(content))
    (models / "seed1.log").write_text(
        "[slow_cpu] share 0.5 of a CPU; float32 matmul before: 49 GFLOP/s\n"
        "[plan] baseline 41 epochs ≈ 67 s (running) · whole run ≈ 15 min + export (this machine: ...)\n"
        "[plan] baseline 41 epochs took 66 s · whole run ≈ 13 min + export\n"
        "[plan] baseline 41 epochs took 66 s · evaluate took 14 s · whole run 12.4 min + export\n"
        "[slow_cpu] the command took 960 s (exit 0); float32 matmul after: 46 GFLOP/s\n")
    out = tmp_path / "first.md"
    bench = load_benchmark("first_command")
    assert bench.main(["--share", "0.5", "--seeds", "1", "--models", str(models), "--out", str(out)]) == 0
    text = out.read_text()
    assert "seed 1: read back" in capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("| 1 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:4] == ["49 / 46", "48, 47", "41/5/46/8"]
    assert cells[4] == "66, 330, 70, 240, 14"
    assert cells[5] == "**13.0**"  # (960 - 180) / 60: the export is not counted
    assert cells[6:9] == ["180", "51 %, 66 %, 55 %, 60 %", "15.0 / 12.4"]
    assert cells[9:] == ["30.0 (28.3-31.7)", "36.2 (34.5-38.0), FixMatch", "**+6.2**"]
    assert "+5 or more in 1 of 1 seeds" in text
    assert "each seed S runs `bash benchmarks/slow_cpu.sh 0.5 -- python -m ssl_keras.run --preset quick --data-dir " \
           "../shared/data/dogs --seed S --run-dir " in text


def test_slow_cpu_refuses_a_share_that_is_no_number():
    import subprocess

    from conftest import REPO

    done = subprocess.run(["bash", str(REPO / "benchmarks" / "slow_cpu.sh"), "half", "--", "true"],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "SHARE must be a number above 0, got 'half'" in done.stderr
