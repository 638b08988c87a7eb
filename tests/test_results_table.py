"""benchmarks/results_table.py on finished runs: the table, its command line, and where it reads and writes.

No training: each seed's run directory already has its report.json, and starting a run would be a failure.
"""

import json

import pytest

from conftest import load_benchmark


def _load():
    return load_benchmark("results_table")


def _finished_run(run_dir, baseline, ssl):
    (run_dir / "finetune_1").mkdir(parents=True)
    (run_dir / "finetune_1" / "stage.json").write_text('{"epochs": 60}')
    (run_dir / "report.json").write_text(json.dumps({
        "classes": [f"c{i}" for i in range(10)],
        "counts": {"labelled": 570, "test": 2924, "unlabelled": 9000},
        "baseline": {"test_accuracy": baseline}, "ssl": {"test_accuracy": ssl},
        "ssl_frozen": {"test_accuracy": 0.2}, "pretext": {"val_accuracy": 0.8},
        "wall_time_s": {"pretext": 1200.0},
    }))


def test_named_variant_reads_its_runs_and_prints_its_command(tmp_path, monkeypatch):
    rt = _load()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(rt, "machine", lambda: "test machine")

    def no_training(cmd, **kwargs):
        raise AssertionError(f"a finished seed was run again: {cmd}")

    monkeypatch.setattr(rt.subprocess, "run", no_training)
    _finished_run(tmp_path / "models" / "results-v12" / "seed0", 0.28, 0.36)
    _finished_run(tmp_path / "models" / "results-v12" / "seed1", 0.30, 0.35)

    rt.main(["--preset", "default", "--seeds", "0", "1", "--name", "v12", "--", "--pretext-epochs", "12"])

    table = (tmp_path / "results" / "v12" / "table.md").read_text()
    assert "| baseline (from scratch) | 29.0 ± 1.4 % | 28.0, 30.0 |" in table
    assert "| SSL, fine-tuned | 35.5 ± 0.7 % | 36.0, 35.0 |" in table
    assert "+6.5 points on average (+8.0, +5.0)" in table
    assert ("Command: `python benchmarks/results_table.py --preset default --seeds 0 1 --data-dir "
            "../shared/data/dogs --name v12 -- --pretext-epochs 12`") in table
    for seed in (0, 1):
        assert (tmp_path / "results" / "v12" / f"seed{seed}" / "finetune_1" / "stage.json").exists()
    assert (tmp_path / "results" / "v12" / "comparison.png").stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["results-v12"]


def test_unfinished_seed_runs_every_stage_into_its_run_dir(tmp_path, monkeypatch):
    rt = _load()
    monkeypatch.chdir(tmp_path)
    calls = []

    def fake_run(cmd, check):
        calls.append(cmd)
        raise RuntimeError("stop after the first stage")

    monkeypatch.setattr(rt.subprocess, "run", fake_run)
    with pytest.raises(RuntimeError):
        rt.main(["--preset", "quick", "--seeds", "3", "--", "--set", "pretext.zoom=0.1"])
    cmd = calls[0]
    assert cmd[1:4] == ["-m", "ssl_keras.run", "baseline"]
    assert cmd[cmd.index("--run-dir") + 1] == "models/results-quick/seed3"
    assert cmd[-3:] == ["--resume", "--set", "pretext.zoom=0.1"]


def test_pretext_from_starts_each_seed_from_the_other_tables_rotation_model(tmp_path, monkeypatch):
    rt = _load()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(rt, "machine", lambda: "test machine")
    src = tmp_path / "models" / "results-default" / "seed0"
    (src / "pretext").mkdir(parents=True)
    (src / "pretext" / "best.keras").write_text("rotation weights")
    for name in ("config.json", "split.json", "skipped.json"):
        (src / name).write_text(json.dumps({"from": name}))
    calls = []

    def fake_run(cmd, check):  # each stage sees the copied rotation model; `report` writes the report
        calls.append(cmd)
        run = tmp_path / cmd[cmd.index("--run-dir") + 1]
        assert (run / "pretext" / "best.keras").read_text() == "rotation weights"
        assert json.loads((run / "split.json").read_text()) == {"from": "split.json"}
        if cmd[3] == "report":
            _finished_run(run, 0.28, 0.37)

    monkeypatch.setattr(rt.subprocess, "run", fake_run)
    rt.main(["--seeds", "0", "--name", "drop", "--pretext-from", "default", "--", "--set", "model.dropout=0.2"])

    assert [c[3] for c in calls] == ["baseline", "pretext", "finetune", "evaluate", "report"]
    assert all(c[-2:] == ["--set", "model.dropout=0.2"] for c in calls)
    assert sorted(p.name for p in src.iterdir()) == ["config.json", "pretext", "skipped.json", "split.json"]
    table = (tmp_path / "results" / "drop" / "table.md").read_text()
    assert "--name drop --pretext-from default -- --set model.dropout=0.2`" in table
    kept = tmp_path / "results" / "drop" / "seed0"
    assert (kept / "report.json").exists() and not (kept / "split.json").exists()  # the split is default's

    with pytest.raises(SystemExit, match="No rotation model at models/results-none/seed0/pretext/best.keras"):
        rt.main(["--seeds", "0", "--name", "other", "--pretext-from", "none"])


def test_also_freeze_fine_tunes_a_copy_and_adds_a_row(tmp_path, monkeypatch):
    rt = _load()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(rt, "machine", lambda: "test machine")
    runs = tmp_path / "models" / "results-default"
    for seed, (baseline, ssl) in enumerate([(0.28, 0.36), (0.30, 0.35)]):
        run = runs / f"seed{seed}"
        _finished_run(run, baseline, ssl)
        for name in ("config.json", "split.json", "skipped.json"):
            (run / name).write_text("{}")
        (run / "pretext").mkdir()
        (run / "pretext" / "best.keras").write_text("weights")
    calls = []

    def fake_run(cmd, check):  # "trains": writes the test metrics that `evaluate` would
        calls.append(cmd)
        copy, freeze = cmd[cmd.index("--run-dir") + 1], cmd[cmd.index("--freeze") + 1]
        assert (tmp_path / copy / "pretext" / "best.keras").exists() and (tmp_path / copy / "config.json").exists()
        if cmd[3] == "evaluate":
            (tmp_path / copy / f"finetune_{freeze}").mkdir(parents=True)
            acc = {"none": 0.40, "2": 0.31}[freeze] + (0.01 if copy.endswith("seed1-variants") else 0)
            (tmp_path / copy / f"finetune_{freeze}" / "test_metrics.json").write_text(json.dumps({"accuracy": acc}))

    monkeypatch.setattr(rt.subprocess, "run", fake_run)
    rt.main(["--preset", "default", "--seeds", "0", "1", "--also-freeze", "none", "2"])

    assert [c[3] for c in calls] == ["finetune", "evaluate"] * 4
    assert all(c[c.index("--run-dir") + 1].endswith("-variants") for c in calls)
    assert sorted(p.name for p in runs.iterdir()) == ["seed0", "seed0-variants", "seed1", "seed1-variants"]
    assert not (runs / "seed0" / "finetune_none").exists()  # the table's own run is left as it was
    table = (tmp_path / "results" / "default" / "table.md").read_text()
    assert "| SSL, fine-tuned, `--freeze none` | 40.5 ± 0.7 % | 40.0, 41.0 |" in table
    assert "| SSL, fine-tuned, `--freeze 2` | 31.5 ± 0.7 % | 31.0, 32.0 |" in table
    assert "Fine-tuned SSL minus baseline: +6.5 points on average (+8.0, +5.0)." in table
    assert "Fine-tuned SSL (`--freeze none`) minus baseline: +11.5 points on average (+12.0, +11.0)." in table
    assert "--data-dir ../shared/data/dogs --also-freeze none 2`" in table
    assert (tmp_path / "results" / "default" / "seed1" / "finetune_none" / "test_metrics.json").exists()

    calls.clear()  # a second call reads the finished variants back
    rt.main(["--preset", "default", "--seeds", "0", "1", "--also-freeze", "none", "2"])
    assert calls == []


# --- benchmarks/pool_seeds.py ----------------------------------------------------------------------------------


def _kept_seed(table_dir, seed, baseline, ssl, **config):
    seed_dir = table_dir / f"seed{seed}"
    seed_dir.mkdir(parents=True)
    (seed_dir / "report.json").write_text(json.dumps({
        "seed": seed, "baseline": {"test_accuracy": baseline}, "ssl": {"test_accuracy": ssl},
        "ssl_frozen": {"test_accuracy": None}}))
    (seed_dir / "config.json").write_text(json.dumps({"seed": seed, "preset": "default", **config}))


def _size(image_size):
    return {"data": {"image_size": image_size}}


def test_pool_seeds_reproduces_a_committed_table(tmp_path):
    """Pooling one table's own seeds gives that table's rows (results/default-96px, written by results_table)."""
    from conftest import REPO

    out = tmp_path / "pooled.md"
    load_benchmark("pool_seeds").main([str(REPO / "results" / "default-96px"), "--out", str(out)])
    table, pooled = (REPO / "results" / "default-96px" / "table.md").read_text(), out.read_text()
    for method in ("baseline (from scratch)", "SSL, backbone frozen", "SSL, fine-tuned"):
        row = next(line for line in table.splitlines() if line.startswith(f"| {method} |"))
        assert row in pooled
    assert "+8.9 ± 3.9 points (+11.3, +11.1, +4.4)" in pooled


def test_pool_seeds_pools_tables_of_one_config_only(tmp_path):
    pool = load_benchmark("pool_seeds")
    _kept_seed(tmp_path / "a", 0, 0.28, 0.36, **_size(96))
    _kept_seed(tmp_path / "b", 3, 0.30, 0.40, **_size(96), transfer_blocks=0)  # a newer run lists a newer option
    out = tmp_path / "pooled.md"
    pool.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)])
    assert "| SSL, fine-tuned | 38.0 ± 2.8 % | 36.0, 40.0 |" in out.read_text()
    assert "+9.0 ± 1.4 points (+8.0, +10.0)" in out.read_text()

    _kept_seed(tmp_path / "c", 4, 0.30, 0.40, **_size(64))
    with pytest.raises(SystemExit, match=r"another config .*\['data.image_size'\]"):
        pool.main([str(tmp_path / "a"), str(tmp_path / "c"), "--out", str(out)])
    with pytest.raises(SystemExit, match="Seed 0 appears twice"):
        pool.main([str(tmp_path / "a"), str(tmp_path / "a"), "--out", str(out)])
    with pytest.raises(SystemExit, match="No seed"):
        pool.main([str(tmp_path), "--out", str(out)])
