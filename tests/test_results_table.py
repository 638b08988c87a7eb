"""benchmarks/results_table.py and label_efficiency.py make, in-process, exactly the runs `python -m ssl_keras.run`
makes for the same config; the table's rows and ranges."""

import json
import os

import pytest
from conftest import load_benchmark

from ssl_keras import run


def _files(run_dir):
    return {name: json.loads((run_dir / name).read_text()) for name in ("config.json", "split.json")}


def _stage_dirs(run_dir):
    return sorted(p.name for p in run_dir.iterdir() if (p / "stage.json").exists())


@pytest.fixture(scope="module")
def cli_run(dogs_dir, tmp_path_factory):
    """The tiny preset through the command line, every stage but export."""
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    for stage in ("baseline", "pretext", "finetune", "methods", "evaluate", "report"):
        argv = [stage, "--run-dir", str(run_dir)]
        if stage == "baseline":
            argv += ["--preset", "tiny", "--seed", "0", "--data-dir", dogs_dir]
        assert run.main(argv) == 0
    return run_dir


@pytest.mark.slow
def test_results_table_makes_the_runs_the_command_line_makes(cli_run, dogs_dir, tmp_path, monkeypatch):
    rt = load_benchmark("results_table")
    monkeypatch.setattr(rt, "machine", lambda: "test machine")
    argv = ["--preset", "tiny", "--seeds", "0", "--data-dir", dogs_dir, "--name", "t", "--out", str(tmp_path / "res"),
            "--models", str(tmp_path / "models")]
    assert rt.main(argv) == 0
    made = tmp_path / "models" / "results-t" / "seed0"
    assert _files(made) == _files(cli_run)  # the same resolved config and the same split
    assert _stage_dirs(made) == _stage_dirs(cli_run)  # the same stages and classifiers
    table = (tmp_path / "res" / "t" / "table.md").read_text()
    report = json.loads((made / "report.json").read_text())
    base, ssl = 100 * report["baseline"]["test_accuracy"], 100 * report["ssl"]["test_accuracy"]
    val = 100 * report["baseline"]["val_accuracy_last"]  # the number choices are made on, beside the test figures
    assert f"| baseline (from scratch) | {val:.1f} | {base:.1f} ± 0.0 % | {base:.1f} to {base:.1f} | {base:.1f} |" \
        in table
    assert f"| SSL, fine-tuned | {ssl - base:+.1f} ± 0.0 | {ssl - base:+.1f} to {ssl - base:+.1f} |" in table
    assert f"--preset tiny --seeds 0 --data-dir {dogs_dir} --name t`" in table
    kept = tmp_path / "res" / "t" / "seed0"
    assert {"report.json", "config.json", "split.json"} <= {p.name for p in kept.iterdir()}
    assert (kept / "baseline" / "history.csv").exists() and not list(kept.rglob("*.keras"))
    assert not list(kept.rglob("prediction.png")) and not list(kept.rglob("rotations.png"))  # no photo committed

    stamp = (made / "report.json").stat().st_mtime_ns  # a second call reads the finished seed back
    assert rt.main(argv) == 0
    assert (made / "report.json").stat().st_mtime_ns == stamp
    with pytest.raises(SystemExit, match="made with another config.*Remove .*results-t/seed0"):  # not read back
        rt.main(argv + ["--set", "baseline.epochs=3"])
    assert (made / "report.json").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_label_efficiency_makes_the_runs_the_command_line_makes(cli_run, dogs_dir, tmp_path):
    le = load_benchmark("label_efficiency")
    work = tmp_path / "work"
    argv = ["--preset", "tiny", "--labels", "4", "8", "--seeds", "0", "--data-dir", dogs_dir, "--out-dir",
            str(tmp_path / "out"), "--plot", str(tmp_path / "le.png"), "--work-dir", str(work)]
    assert le.main(argv) == 0
    cell = work / "seed0" / "L8"  # tiny labels 8 photos a class: the command line's run
    assert _files(cell)["split.json"] == _files(cli_run)["split.json"]
    cfg, cli_cfg = _files(cell)["config.json"], _files(cli_run)["config.json"]
    assert cfg == {**cli_cfg, "data": {**cli_cfg["data"], "data_dir": os.path.abspath(dogs_dir)}}
    assert _stage_dirs(cell) == _stage_dirs(cli_run)
    # One rotation model per seed: trained at the smallest count, the same file at the other.
    copied = work / "seed0" / "L4" / "pretext" / "best.keras"
    assert (cell / "pretext" / "best.keras").read_bytes() == copied.read_bytes()
    text = (tmp_path / "out" / "label_efficiency.md").read_text()
    assert "| 4 |" in text and "| 8 |" in text and "baseline labels for SSL, fine-tuned" in text
    assert (tmp_path / "le.png").exists()


def test_label_efficiency_report_states_the_stopping_rule_and_the_labels_saved(tmp_path):
    """The table says "no early stopping" for patience 0, and interpolates the baseline's labels on a log scale."""
    le = load_benchmark("label_efficiency")
    cols = [("baseline", "baseline"), ("ssl_frozen", "SSL frozen"), ("ssl", "SSL, fine-tuned"),
            ("best", "picked by validation")]
    acc = {"baseline": (0.2, 0.4), "ssl_frozen": (0.1, 0.2), "ssl": (0.3, 0.5), "best": (0.3, 0.5)}
    results = {"cells": {f"seed0/L{n}": {k: {"test_accuracy": a[i]} for k, a in acc.items()} | {"wall_s": 60}
                         for i, n in enumerate((10, 100))}}
    settings = {"preset": "quick", "method": ["pretrain"], "image_size": 64, "num_classes": 10, "n_test": 1000,
                "n_val": 500, "epochs": 60, "pretext_epochs": 12}
    for patience, said in ((0, "(no early stopping)"), (10, "(early stopping patience 10)")):
        results["settings"] = {**settings, "patience": patience}
        text = le.report(results, [("10", 10), ("100", 100)], [0], cols, "cmd", "host", str(tmp_path / "t.md"),
                         str(tmp_path / "t.png"))
        assert f"labelled stages up to 60 epochs {said}, rotation task 12 epochs." in text
    # fine-tuned 30 % at 10 labels: half-way from 20 % (10 labels) to 40 % (100 labels) on a log scale -> ~32
    assert "| 10 | 20.0 ± 0.0 | 10.0 ± 0.0 | 30.0 ± 0.0 | 30.0 ± 0.0 | ~32 | ~32 |" in text
    assert "| 100 | 40.0 ± 0.0 | 20.0 ± 0.0 | 50.0 ± 0.0 | 50.0 ± 0.0 | >100 | >100 |" in text


def test_a_run_the_time_cap_shrank_is_read_back_not_refused(tmp_path):
    """A cap rewrites config.json with the epochs it planned (plan.json); re-reading the seed compares against those."""
    from ssl_keras import config as config_lib

    rt = load_benchmark("results_table")
    args = rt.parse(["--preset", "tiny", "--seeds", "0", "--data-dir", str(tmp_path / "photos"), "--name", "t",
                     "--models", str(tmp_path / "models"), "--set", "max_minutes=1"])
    cfg = rt.config_for(args, 0)
    run_dir = tmp_path / "models" / "results-t" / "seed0"
    run_dir.mkdir(parents=True)
    plans = [{"before": "pretext", "epochs": {"pretext": 1, "finetune": 2}},
             {"before": "finetune", "epochs": {"finetune": 1}}]
    shrunk = config_lib.override(cfg, {"pretext": {"epochs": 1}, "finetune": {"epochs": 1}, "max_minutes": None})
    (run_dir / "config.json").write_text(json.dumps(config_lib.to_dict(shrunk)))
    (run_dir / "plan.json").write_text(json.dumps({"max_minutes": 1, "plans": plans}))
    (run_dir / "report.json").write_text("{}")  # finished: read back, not run
    assert rt.run_seed(args, 0, "t") == str(run_dir)
    (run_dir / "plan.json").write_text(json.dumps({"max_minutes": 1, "plans": plans[:1]}))  # not how it was made
    with pytest.raises(SystemExit, match="made with another config"):
        rt.run_seed(args, 0, "t")
