"""experiment.py: the whole pipeline end to end on the real photos (through the command line), resume, transfer."""

import contextlib
import io
import json
import os
import re
import shutil
import time
import zipfile

import numpy as np
import pytest
from conftest import run_main
from PIL import Image

from ssl_keras import config as config_lib
from ssl_keras import presets, run, sources, split as split_lib, train


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


_main = run_main


# --- end to end ----------------------------------------------------------------------------------------------

STAGES = ("baseline", "pretext", "finetune", "evaluate", "report")


@pytest.fixture(scope="module")
def e2e(dogs_dir, tmp_path_factory):
    """The tiny preset on the real photos, every stage but export through `main`, then `predict`."""
    run_dir = tmp_path_factory.mktemp("e2e") / "run"
    calls = {}
    for stage in STAGES:
        argv = [stage, "--run-dir", str(run_dir)]
        if stage == "baseline":
            argv += ["--preset", "tiny", "--data-dir", dogs_dir]
        calls[stage] = _captured(argv)
    split = json.loads((run_dir / "split.json").read_text())
    photo = os.path.join(dogs_dir, split["test"][0][0])
    calls["predict"] = _captured(["predict", photo, "--run-dir", str(run_dir)])
    return run_dir, calls, photo


def _captured(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = run.main(argv)
    return rc, out.getvalue(), err.getvalue()


CLASSIFIERS = ("baseline", "finetune_1", "finetune_all")


@pytest.mark.slow
def test_end_to_end_artefacts(e2e, dogs_dir):
    run_dir, calls, _ = e2e
    for stage, (rc, out, err) in calls.items():
        assert rc == 0, f"{stage}: {err}"
    for name in ("config.json", "split.json", "skipped.json", "report.json", "comparison.png", "prediction.png",
                 "pretext/rotations.png"):
        assert (run_dir / name).is_file(), name
    for stage in ("pretext", *CLASSIFIERS):
        for name in ("history.csv", "best.keras", "final.keras", "curves.png", "stage.json"):
            assert (run_dir / stage / name).is_file(), f"{stage}/{name}"
        hist = train.read_history(str(run_dir / stage / "history.csv"))
        assert hist["epoch"] == [0.0, 1.0], stage  # tiny: 2 epochs a stage
    for stage in CLASSIFIERS:
        assert (run_dir / stage / "confusion.png").is_file()
        assert json.loads((run_dir / stage / "test_metrics.json").read_text())["n"] == 24
    for png in run_dir.rglob("*.png"):
        with Image.open(png) as im:
            assert im.format == "PNG" and min(im.size) > 100, png

    cfg = config_lib.from_dict(json.loads((run_dir / "config.json").read_text()))
    assert cfg == config_lib.override(presets.tiny(), {"data": {"data_dir": dogs_dir}})

    report = json.loads((run_dir / "report.json").read_text())
    records = sources.ImageFolder(dogs_dir).records()
    assert report["classes"] == split_lib.choose_classes(records, num_classes=3)
    assert report["seed"] == 0 and report["preset"] == "tiny"
    assert report["counts"] == {"labelled": 24, "val": 12, "test": 24, "unlabelled": 58, "unlabelled_val": 6,
                                "skipped": 0}
    for key in ("baseline", "ssl", "ssl_frozen"):
        assert 0.0 <= report[key]["test_accuracy"] <= 1.0, key
        assert report[key]["wall_time_s"] > 0, key
    assert report["ssl"]["freeze"] == "1" and report["ssl_frozen"]["freeze"] == "all"
    assert report["ssl"]["weights_copied"] == report["ssl_frozen"]["weights_copied"] == 2 * 5
    assert 0.0 <= report["pretext"]["val_accuracy"] <= 1.0
    assert report["pretext"]["samples_per_epoch"] == 4 * 58
    assert set(report["wall_time_s"]) == {"baseline", "pretext", "finetune", "evaluate"}
    assert all(t > 0 for t in report["wall_time_s"].values())

    split = json.loads((run_dir / "split.json").read_text())
    assert all(os.path.basename(k).startswith("imagewoof_val_") for k, _ in split["test"])
    assert json.loads((run_dir / "skipped.json").read_text()) == {"count": 0, "files": []}
    for path in run_dir.rglob("*.keras"):  # Keras' own layers only: plain keras.models.load_model reads them
        with zipfile.ZipFile(path) as z:
            assert "ssl_keras" not in z.read("config.json").decode(), path


@pytest.mark.slow
def test_end_to_end_prints_the_whole_run_time(e2e):
    """Each call that trains prints the `[plan]` line (budget.Clock) once its fits are measured and as they end."""
    _, calls, _ = e2e
    plans = {stage: [ln for ln in out.splitlines() if ln.startswith("[plan] ")] for stage, (_, out, _) in calls.items()}
    assert plans["baseline"][-1].startswith("[plan] baseline 2 epochs took ")
    assert re.search(r" · whole run \d+ s \(this machine: [\d,]+ samples/s in baseline = \d+% of its [\d,]+ GFLOP/s "
                     r"float32 matmul\)$", plans["baseline"][-1])
    assert re.match(r"\[plan\] pretext 2 epochs took \d+ s · whole run \d+ s", plans["pretext"][-1])
    assert re.match(r"\[plan\] finetune_all 2 epochs (took|≈) \d+ s.* · finetune_1 2 epochs ≈ \d+ s · "
                    r"whole run ≈ ", plans["finetune"][0])
    assert plans["evaluate"] == plans["report"] == plans["predict"] == []  # nothing trained: no plan


@pytest.mark.slow
@pytest.mark.parametrize("minutes", [0.01, 60])
def test_a_time_cap_shrinks_the_stages_of_a_late_run_and_leaves_one_that_fits(dogs_dir, tmp_path, minutes):
    """`max_minutes`: nothing planned before a fit is measured; then, in a run that would end after the cap, the
    stages not yet begun lose epochs (config.json gets them, the cap cleared); a run that fits is left as given."""
    from ssl_keras import experiment, rundir

    cfg = config_lib.override(presets.tiny(), {"data": {"data_dir": dogs_dir}, "pretext": {"epochs": 3},
                                               "max_minutes": minutes})
    experiment.prepare(cfg)
    lines = []
    run_dir = tmp_path / "run"
    experiment.run_stages(rundir.Run(cfg, str(run_dir), verbose=0, log=lines.append), ("baseline", "pretext"))
    saved = json.loads((run_dir / "config.json").read_text())
    assert json.loads((run_dir / "baseline" / "stage.json").read_text())["epochs"] == 2  # before any rate: as given
    capped = [ln for ln in lines if ln.startswith("[time cap]")]
    if minutes < 1:
        assert len(capped) == 1 and re.match(
            r"\[time cap\] 0.01 min, spent \(\d+ s over\): pretext 1 epochs \(config: 3\)$", capped[0])
        assert saved["max_minutes"] is None and saved["pretext"]["epochs"] == 1
        assert json.loads((run_dir / "plan.json").read_text())["max_minutes"] == 0.01
    else:
        assert capped == [] and not (run_dir / "plan.json").exists()
        assert saved["max_minutes"] == 60 and saved["pretext"]["epochs"] == 3
    assert train.read_history(str(run_dir / "pretext" / "history.csv"))["epoch"] == list(
        map(float, range(saved["pretext"]["epochs"])))


@pytest.mark.slow
def test_a_budgeted_run_writes_the_epochs_that_re_make_it(dogs_dir, tmp_path):
    """`--budget` sets the epochs from the probe and writes them (budget cleared) to config.json; `--config` of
    that file makes the same run again, without planning."""
    first, again = tmp_path / "budgeted", tmp_path / "again"
    rc, out, err = _captured(["baseline", "--preset", "tiny", "--data-dir", dogs_dir, "--budget", "0.01",
                              "--run-dir", str(first)])
    assert rc == 0, err
    assert re.search(r"^\[budget\] 0.01 min, spent \(\d+ s over\): baseline 1 epochs \(config: 2\)$", out, re.M)
    saved = json.loads((first / "config.json").read_text())
    assert saved["budget_minutes"] is None and saved["baseline"]["epochs"] == 1
    plan = json.loads((first / "plan.json").read_text())
    assert plan["budget_minutes"] == 0.01 and plan["probe_samples_per_s"] > 0
    assert plan["config_epochs"] == {"baseline": 2} and plan["plans"][0]["epochs"] == {"baseline": 1}

    rc, out, err = _captured(["baseline", "--config", str(first / "config.json"), "--run-dir", str(again)])
    assert rc == 0, err
    assert "[budget]" not in out and not (again / "plan.json").exists()
    assert json.loads((again / "config.json").read_text()) == saved
    assert (again / "split.json").read_text() == (first / "split.json").read_text()
    for run_dir in (first, again):  # (the losses are not compared: two CPU runs of one config differ by ~2 %)
        assert train.read_history(str(run_dir / "baseline" / "history.csv"))["epoch"] == [0.0]
        assert json.loads((run_dir / "baseline" / "stage.json").read_text())["epochs"] == 1


@pytest.mark.slow
def test_end_to_end_predict(e2e):
    _, calls, photo = e2e
    rc, out, err = calls["predict"]
    assert rc == 0 and err == ""
    lines = out[out.index(photo):].splitlines()[1:4]
    assert len(lines) == 3  # top-k is 5, the run has 3 classes
    assert sum(float(line.split("%")[0]) for line in lines) == pytest.approx(100, abs=0.1)


@pytest.mark.slow
def test_resume_skips_finished_stages(e2e, capsys):
    run_dir = e2e[0]
    stamps = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*.keras")}
    start = time.time()
    for stage, names in (("baseline", ["baseline"]), ("pretext", ["pretext"]), ("finetune", CLASSIFIERS[1:])):
        rc, out, _ = _main(capsys, stage, "--resume", "--run-dir", run_dir)
        assert rc == 0
        for name in names:
            assert f"[{name}] already finished; skipping (--resume)." in out
    print(f"resume of 3 finished stages: {time.time() - start:.1f} s")
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*.keras")} == stamps  # nothing was trained again
    for stage in ("pretext", *CLASSIFIERS):
        assert len(train.read_history(str(run_dir / stage / "history.csv"))["loss"]) == 2


def _finetune_on_e2e_pretext(e2e, tmp_path, capsys, *flags):
    """The finetune stage again, with `flags`, in a new run directory holding the e2e run's split and rotation model."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("config.json", "split.json"):
        shutil.copy(e2e[0] / name, run_dir / name)
    shutil.copytree(e2e[0] / "pretext", run_dir / "pretext")
    rc, out, err = _main(capsys, "finetune", "--run-dir", run_dir, "--resume", *flags)
    assert rc == 0, err
    return run_dir, out


@pytest.mark.slow
def test_finetune_from_frozen_starts_from_the_frozen_classifier(e2e, tmp_path, capsys):
    """LP-FT: the fine-tuned classifier starts from the frozen one as trained, its head included."""
    import keras

    run_dir, out = _finetune_on_e2e_pretext(e2e, tmp_path, capsys, "--set", "finetune_from=frozen")
    assert "[finetune_1] 24 labelled photos; start: teacher (finetune_all)" in out
    stage = json.loads((run_dir / "finetune_1" / "stage.json").read_text())
    assert (stage["init"], stage["teacher"]) == ("teacher", "finetune_all")

    def kernel(path):
        return np.ravel(keras.models.load_model(path).get_layer("breed_dense").kernel)

    frozen = kernel(run_dir / "finetune_all" / "best.keras")
    # Two tiny epochs from the frozen classifier's head stay close to it; a fresh head is unrelated to it.
    assert np.corrcoef(kernel(run_dir / "finetune_1" / "final.keras"), frozen)[0, 1] > 0.9
    assert abs(np.corrcoef(kernel(e2e[0] / "finetune_1" / "final.keras"), frozen)[0, 1]) < 0.3


@pytest.mark.slow
def test_finetune_transfers_only_the_first_blocks(e2e, tmp_path, capsys):
    import keras

    run_dir, _ = _finetune_on_e2e_pretext(e2e, tmp_path, capsys, "--transfer-blocks", "1")
    copied = {d: json.loads((run_dir / d / "stage.json").read_text())["weights_copied"]
              for d in ("finetune_1", "finetune_all")}
    assert copied == {"finetune_1": 5, "finetune_all": 10}  # the frozen comparison takes the whole backbone

    def kernel(path, layer):
        return np.ravel(keras.models.load_model(path).get_layer("backbone").get_layer(layer).kernel)

    pretext = run_dir / "pretext" / "best.keras"
    # Block 1 is frozen, so it still holds the pretext weights.
    np.testing.assert_array_equal(kernel(run_dir / "finetune_1" / "final.keras", "block1_conv1"),
                                  kernel(pretext, "block1_conv1"))
    # Block 2 started fresh: two tiny epochs later it is unrelated to the pretext kernel, where the
    # fully transferred run's block 2 is still close to it.

    def corr(path):
        return np.corrcoef(kernel(path, "block2_conv1"), kernel(pretext, "block2_conv1"))[0, 1]

    assert corr(run_dir / "finetune_1" / "final.keras") < 0.3
    assert corr(e2e[0] / "finetune_1" / "final.keras") > 0.9


@pytest.mark.slow
def test_resume_keeps_wall_times(e2e, capsys):
    run_dir = e2e[0]
    trained = json.loads((run_dir / "pretext" / "stage.json").read_text())["wall_time_s"]
    _main(capsys, "pretext", "--resume", "--run-dir", run_dir)
    # main() times the stage from outside, so its figure is at least the stage's own.
    assert json.loads((run_dir / "wall_time.json").read_text())["pretext"] >= trained


@pytest.mark.slow
def test_resume_reads_the_time_of_a_stage_trained_elsewhere(e2e, capsys):
    # A stage copied in from another run (benchmarks/results_table.py --pretext-from) has its stage.json but no
    # entry in this run's wall_time.json: its time is the one its stage.json recorded, not the seconds of the skip.
    run_dir = e2e[0]
    path = run_dir / "wall_time.json"
    saved = path.read_text()

    def recorded(name):
        return json.loads((run_dir / name / "stage.json").read_text())["wall_time_s"]

    try:
        path.write_text(json.dumps({k: v for k, v in json.loads(saved).items() if k not in ("pretext", "finetune")}))
        for stage in ("pretext", "finetune"):
            assert _main(capsys, stage, "--resume", "--run-dir", run_dir)[0] == 0
        wall = json.loads(path.read_text())
        assert wall["pretext"] == recorded("pretext") > 0
        assert wall["finetune"] == pytest.approx(recorded("finetune_1") + recorded("finetune_all"), abs=0.1)
    finally:
        path.write_text(saved)


@pytest.mark.slow
def test_resume_times_a_stage_that_ran_again(e2e, capsys):
    run_dir = e2e[0]
    path = run_dir / "wall_time.json"
    saved = path.read_text()
    try:
        path.write_text(json.dumps({**json.loads(saved), "baseline": 12345.0, "evaluate": 12345.0}))
        for stage in ("baseline", "evaluate"):  # baseline is skipped, evaluate always runs again
            assert _main(capsys, stage, "--resume", "--run-dir", run_dir)[0] == 0
        wall = json.loads(path.read_text())
        assert wall["baseline"] == 12345.0
        assert 0 < wall["evaluate"] < 12345.0
    finally:
        path.write_text(saved)


@pytest.mark.slow
def test_a_rotation_task_at_a_smaller_size_moves_into_the_classifier_and_every_run_writes_its_speed(
        dogs_dir, tmp_path):
    """`data.pretext_image_size` trains the rotation task at its own size; its conv weights fit the classifier at the
    run's size. speed.json gives each fit's samples/s, share of the matmul rate and its seconds by part."""
    run_dir = tmp_path / "small_pretext"
    for stage in ("pretext", "finetune"):
        rc, out, err = _captured([stage, "--preset", "tiny", "--data-dir", dogs_dir, "--run-dir", str(run_dir),
                                  "--set", "data.pretext_image_size=16"])
        assert rc == 0, err
    rotation = train.models.load(str(run_dir / "pretext" / "best.keras"))
    assert rotation.get_layer("backbone").get_layer("resize").get_config()["height"] == 16
    stage = json.loads((run_dir / "finetune_1" / "stage.json").read_text())
    assert stage["weights_copied"] > 0
    classifier = train.models.load(str(run_dir / "finetune_1" / "best.keras"))
    assert classifier.get_layer("backbone").get_layer("resize").get_config()["height"] == 32
    speed = json.loads((run_dir / "speed.json").read_text())
    assert speed["matmul_gflops"]["start"] > 0 and speed["train_mflop_per_sample"] > 0
    fits = speed["fits"]
    assert set(fits) == {"finetune_all", "finetune_1"}  # the last call's fits
    for fit in fits.values():
        assert fit["samples_per_s"] > 0 and 0 < fit["of_matmul"] < 1
        assert set(fit["spent_s"]) == {"batchnorm", "validation", "checkpoint"}
        assert sum(fit["spent_s"].values()) <= fit["seconds"]


def test_the_export_checks_tfjs_on_at_most_1000_test_photos_of_every_class():
    from ssl_keras import experiment

    items = [[f"c{c}/{i}", c] for c in range(10) for i in range(292 + (c < 4))]  # 2,924, by class, as a split
    picked = experiment.export_check_photos(items)
    assert 900 <= len(picked) <= experiment.EXPORT_CHECK_PHOTOS
    assert {c for _, c in picked} == set(range(10))
    assert experiment.export_check_photos(items[:60]) == items[:60] and experiment.export_check_photos([]) == []
