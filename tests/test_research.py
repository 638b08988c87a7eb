"""research/: best checkpoint against last epoch, pooling seeds of one config, copying a finished stage, the stall
watch, averaging classifiers, the table of FixMatch variants."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import load_benchmark

from ssl_keras import config as config_lib
from ssl_keras import presets

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _constant(cfg, path, first: bool, file: str = "best.keras"):
    """A classifier of two classes that always says the first (or the second), saved as `path/file`."""
    from ssl_keras import models

    model = models.build_classifier(cfg.model, cfg.data.image_size, 2)
    head = model.get_layer("breed")
    head.set_weights([np.zeros_like(head.kernel), np.array([10.0, -10.0] if first else [-10.0, 10.0], "float32")])
    os.makedirs(path, exist_ok=True)
    model.save(os.path.join(path, file))


def _run_dir(path, cfg, split: dict):
    """A finished run's directory as the research scripts read it: its config.json and split.json."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config_lib.to_dict(cfg)))
    (path / "split.json").write_text(json.dumps(split))
    return path


def test_best_vs_final_scores_the_last_epoch_on_the_test_photos(dogs_dir, tmp_path):
    """A last-epoch model that always says the first class scores exactly that class's share of the test photos."""
    from ssl_keras import sources

    records = sources.ImageFolder(dogs_dir).records()
    classes = sorted({r.label for r in records})[:2]
    records = [r for r in records if r.label in classes]
    test = [[r.key, classes.index(r.label)] for r in records[:3] + records[-2:]]
    cfg = presets.tiny()
    run = _run_dir(tmp_path / "run", config_lib.override(cfg, {"data": {"data_dir": dogs_dir}}),
                   {"test": test, "classes": classes})
    _constant(cfg, run / "baseline", first=True, file="final.keras")
    (run / "baseline" / "test_metrics.json").write_text('{"accuracy": 0.25}')

    out = tmp_path / "table.md"
    assert load_benchmark("best_vs_final", "research").main([str(run), "--out", str(out)]) == 0
    share = 100 * sum(label == 0 for _, label in test) / len(test)
    assert f"| {run} | baseline | 25.0 | {share:.1f} |" in out.read_text()


def _kept_seed(table_dir, seed, baseline, ssl, **config):
    seed_dir = table_dir / f"seed{seed}"
    seed_dir.mkdir(parents=True)
    (seed_dir / "report.json").write_text(json.dumps({
        "seed": seed, "baseline": {"test_accuracy": baseline, "label": "baseline (from scratch)"},
        "ssl": {"test_accuracy": ssl, "label": "SSL, fine-tuned"}, "ssl_frozen": {"test_accuracy": None}}))
    (seed_dir / "config.json").write_text(json.dumps({"seed": seed, "preset": "default", **config}))


def _size(image_size):
    return {"data": {"image_size": image_size}}


def test_pool_seeds_pools_tables_of_one_config_only(tmp_path):
    pool = load_benchmark("pool_seeds", "research")
    _kept_seed(tmp_path / "a", 0, 0.28, 0.36, **_size(96))
    _kept_seed(tmp_path / "b", 3, 0.30, 0.40, **_size(96), transfer_blocks=0)  # a newer run lists a newer option
    out = tmp_path / "pooled.md"
    pool.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)])
    assert "| SSL, fine-tuned | 38.0 ± 2.8 | 9.0 ± 1.4 | 36.0, 40.0 |" in out.read_text()
    assert "| baseline (from scratch) | 29.0 ± 1.4 | - | 28.0, 30.0 |" in out.read_text()

    _kept_seed(tmp_path / "c", 4, 0.30, 0.40, **_size(64))
    with pytest.raises(SystemExit, match=r"another config .*\['data.image_size'\]"):
        pool.main([str(tmp_path / "a"), str(tmp_path / "c"), "--out", str(out)])
    with pytest.raises(SystemExit, match="Seed 0 appears twice"):
        pool.main([str(tmp_path / "a"), str(tmp_path / "a"), "--out", str(out)])
    with pytest.raises(SystemExit, match="No seed"):
        pool.main([str(tmp_path), "--out", str(out)])


def test_copy_stage_starts_a_run_from_another_runs_finished_stage(tmp_path, capsys):
    copy = load_benchmark("copy_stage", "research")
    src = tmp_path / "src"
    (src / "pretext" / "backup").mkdir(parents=True)
    (src / "config.json").write_text(json.dumps(config_lib.to_dict(presets.tiny())))
    (src / "split.json").write_text("{}")
    assert copy.main([str(src), str(tmp_path / "new")]) == 2
    assert "No finished 'pretext' stage" in capsys.readouterr().err
    (src / "pretext" / "stage.json").write_text('{"wall_time_s": 12.5}')
    (src / "pretext" / "best.keras").write_text("weights")
    (src / "pretext" / "backup" / "state.json").write_text("{}")
    assert copy.main([str(src), str(tmp_path / "new")]) == 0
    new = tmp_path / "new"
    assert (new / "pretext" / "best.keras").read_text() == "weights"
    assert json.loads((new / "pretext" / "stage.json").read_text())["wall_time_s"] == 12.5  # its own time kept
    assert not (new / "pretext" / "backup").exists()
    assert (new / "split.json").read_text() == "{}"


def test_stall_watch_patches_the_command_and_its_child_processes(tmp_path):
    show = ("from ssl_keras import train; "
            "print(train.Pace.on_train_end.__qualname__, train.Checkpointer.finish.__qualname__)")
    script = tmp_path / "parent.py"
    script.write_text(f"import subprocess, sys\n{show}\nsys.stdout.flush()\n"
                      f"subprocess.run([sys.executable, '-c', {show!r}], check=True)\n")
    out = subprocess.run([sys.executable, os.path.join(REPO, "research", "stall_watch.py"), str(script)],
                         capture_output=True, text=True, check=True, cwd=tmp_path).stdout.split("\n")
    watched = "install.<locals>.on_train_end install.<locals>.watched_finish"
    assert out[:2] == [watched, watched]
    plain = subprocess.run([sys.executable, "-c", show], capture_output=True, text=True, check=True).stdout
    assert plain.strip() == "Pace.on_train_end Checkpointer.finish"


def test_rate_ratios_gives_each_fit_over_its_baseline_and_the_budget_used(tmp_path, capsys):
    rr = load_benchmark("rate_ratios", "research")

    def run(name, pretext, budget_minutes=None, seconds=60.0):
        d = tmp_path / name
        d.mkdir()
        fits = {"baseline": {"samples_per_s": 1000.0, "seconds": seconds / 2},
                "pretext": {"samples_per_s": pretext, "seconds": seconds / 2}}
        (d / "speed.json").write_text(json.dumps({"matmul_gflops": {"start": 200.0}, "train_mflop_per_sample": 51.9,
                                                  "fits": fits}))
        if budget_minutes:
            (d / "plan.json").write_text(json.dumps({"budget_minutes": budget_minutes, "plans": [{"epochs": {}}]}))

    run("a", 1500.0, budget_minutes=2.0)  # 60 s of fits in a 120 s budget
    run("b", 2000.0)
    run("c", 1100.0, budget_minutes=0.5)  # 60 s in 30 s: over
    assert rr.main(str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "| 51.9 | AMD EPYC | 3 | 1.10 / 1.50 / 2.00 | - | - |" in out
    assert "Budgeted runs: 2; their fits' seconds ÷ the budget: 0.50 / 1.25 / 2.00" in out
    assert "over the budget: 1, by at most 100%." in out


def test_variants_table_pools_each_variant_over_its_base_runs(tmp_path, capsys):
    vt = load_benchmark("variants_table", "research")
    lines = []
    for name, seed, val, seconds, fixmatch in (("ref-q", 0, 0.36, 60.0, 0.37), ("ref-s", 0, 0.34, 56.0, 0.35),
                                               ("k50-q", 0, 0.38, 50.0, 0.38)):
        run = tmp_path / name / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "stage.json").write_text(json.dumps({"wall_time_s": seconds, "epochs": 8}))
        (run / "history.csv").write_text("epoch,consistency_confident\n0.0,0.3\n1.0,0.4\n")
        lines.append(f"{name} {seed} val_last {val} val_best {val} secs 70 epochs 8 test "
                     f"{{'baseline': 0.3, 'finetune_1': 0.33, 'fixmatch': {fixmatch}}}")
    (tmp_path / "runs.log").write_text("\n".join(lines) + "\n")
    assert vt.main(str(tmp_path)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2] == "| ref | 8 | 58 (56-60) | 35.0 (36.0, 34.0) | 0.30 / 0.40 | 36.0 | +6.0 (+7.0, +5.0) |"
    assert out[3] == "| k50 | 8 | 50 (50-50) | 38.0 (38.0) | 0.30 / 0.40 | 38.0 | +8.0 (+8.0) |"


def test_full_test_scores_the_shipped_and_the_baseline_on_every_declared_test_photo(dogs_dir, tmp_path):
    """Capped test photos: 1 beagle + 1 samoyed; every declared one: 3 of each, one beagle skipped as broken."""
    root, classes = tmp_path / "dogs", ["beagle", "samoyed"]
    val = {b: sorted(f for f in os.listdir(os.path.join(dogs_dir, b)) if f.startswith("imagewoof_val_"))[:3]
           for b in classes}
    for b, names in val.items():
        (root / b).mkdir(parents=True)
        for name in names:
            (root / b / name).write_bytes(open(os.path.join(dogs_dir, b, name), "rb").read())
        train = next(f for f in sorted(os.listdir(os.path.join(dogs_dir, b))) if f.startswith("imagewoof_train_"))
        (root / b / train).write_bytes(open(os.path.join(dogs_dir, b, train), "rb").read())
    cfg = config_lib.override(presets.tiny(), {"data": {"data_dir": str(root)}})
    own = [[f"beagle/{val['beagle'][0]}", 0], [f"samoyed/{val['samoyed'][0]}", 1]]
    run = _run_dir(tmp_path / "cases" / "results-quick" / "seed0", cfg,
                   {"classes": classes, "test": own, "source": "dogs"})
    (run / "skipped.json").write_text(json.dumps({"count": 1, "files": [f"beagle/{val['beagle'][2]}"]}))
    (run / "report.json").write_text(json.dumps({"seed": 0, "best": {"dir": "fixmatch"}}))
    _constant(cfg, run / "baseline", first=True)
    _constant(cfg, run / "fixmatch", first=False)
    for name in ("baseline", "fixmatch"):
        (run / name / "test_metrics.json").write_text('{"accuracy": 0.5}')

    full = load_benchmark("full_test", "research")
    out, scores = tmp_path / "full.md", tmp_path / "full.json"
    assert full.main([str(tmp_path / "cases" / "*" / "seed*"), "--out", str(out), "--json", str(scores)]) == 0
    # all test photos: 2 beagles (one skipped) + 3 samoyeds; the shipped says samoyed, the baseline beagle
    assert f"| {run} | 0 | fixmatch | 50.0 | 50.0 | +0.0 | 40.0 | 60.0 | **+20.0** (" in out.read_text()
    assert json.loads(scores.read_text()) == {str(run): {"baseline": 0.4, "shipped": 0.6, "photos": 5}}

    gvb = load_benchmark("gain_vs_budget")
    args = gvb.parse(["--models", str(tmp_path / "cases"), "--test-scores", str(scores)])
    row, scored = {"case": "quick", "seed": 0, "baseline": 0.5, "shipped": 0.5}, json.loads(scores.read_text())
    assert gvb.rescored(args, scored, row) == {"case": "quick", "seed": 0, "baseline": 0.4, "shipped": 0.6,
                                               "photos": 5}
    with pytest.raises(SystemExit, match="has no scores of"):
        gvb.rescored(args, scored, row | {"seed": 1})

    (run / "baseline" / "test_metrics.json").write_text('{"accuracy": 0.9}')  # not what this classifier scores
    with pytest.raises(SystemExit, match="not the same classifier or photos"):
        full.main([str(run), "--out", str(out)])


def test_ensemble_averages_the_classifiers_probabilities(dogs_dir, tmp_path):
    """The baseline always says the first class, the fine-tuned and FixMatch classifiers the second: every average
    with two of them says the second."""
    from ssl_keras import sources

    records = sources.ImageFolder(dogs_dir).records()
    classes = sorted({r.label for r in records})[:2]
    firsts = [r for r in records if r.label == classes[0]][:3]
    seconds = [r for r in records if r.label == classes[1]][:2]
    cfg = config_lib.override(presets.tiny(), {"data": {"data_dir": dogs_dir}})
    val = [[r.key, classes.index(r.label)] for r in firsts + seconds]  # 3 of the first class, 2 of the second
    run = _run_dir(tmp_path / "run", cfg, {"classes": classes, "val": val, "test": val[2:]})  # test: 1 and 2
    _constant(cfg, run / "baseline", first=True)
    _constant(cfg, run / "finetune_1", first=False)
    _constant(cfg, run / "fixmatch", first=False)

    out = tmp_path / "ensemble.md"
    assert load_benchmark("ensemble", "research").main([str(run), "--out", str(out)]) == 0
    text = out.read_text()
    assert f"| {run} | 60.0 | 40.0 | 40.0 | 40.0 | 40.0 | 33.3 | 66.7 | 66.7 | 66.7 | 66.7 |" in text
    assert "val: fine-tuned + FixMatch minus FixMatch, per run: +0.0 (higher in 0 of 1)" in text
