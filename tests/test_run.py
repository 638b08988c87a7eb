"""run.py: every bad input gives exit status 2 and one clear line (no traceback); the whole pipeline end to end.

Every call passes `--run-dir` under a temporary folder, and the tests run from a temporary working directory,
so nothing lands in the repository's `models/`.
"""

import contextlib
import io
import json
import os
import shutil

import pytest
from conftest import run_main

from ssl_keras import run, train


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


_main = run_main


# --- bad input -----------------------------------------------------------------------------------------------


def test_missing_data_dir(tmp_path, capsys):
    rc, _, err = _main(capsys, "baseline", "--preset", "tiny", "--data-dir", tmp_path / "nope",
                       "--run-dir", tmp_path / "run")
    assert rc == 2
    assert err.startswith("error: Data folder") and "does not exist" in err and "ImageFolder" in err


def test_data_dir_with_one_class(tmp_path, capsys, image_folder):
    (tmp_path / "dogs" / "beagle").mkdir(parents=True)
    shutil.copy(image_folder.source_photo, tmp_path / "dogs" / "beagle")
    (tmp_path / "dogs" / "not_a_class.txt").write_text("")
    rc, _, err = _main(capsys, "baseline", "--preset", "tiny", "--data-dir", tmp_path / "dogs",
                       "--run-dir", tmp_path / "run")
    assert rc == 2
    assert "1 class folder(s) (['beagle'])" in err and "Expected at least 2" in err


def test_more_labels_per_class_than_photos(tmp_path, capsys, image_folder):
    rc, _, err = _main(capsys, "baseline", "--preset", "tiny", "--data-dir", image_folder.root,
                       "--run-dir", tmp_path / "run", "--num-classes", "2", "--labels-per-class", "50")
    assert rc == 2
    assert "error: Class 'beagle' has 7 photos outside its test split" in err
    assert "Lower `--labels-per-class`" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--preset", "nosuch"], "invalid choice: 'nosuch'"),
        (["--nosuch"], "unrecognized arguments: --nosuch"),
        (["--epochs", "many"], "invalid int value: 'many'"),
        (["nosuch-stage"], "invalid choice: 'nosuch-stage'"),
    ],
)
def test_unknown_preset_option_or_stage_exits_2(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        run.main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--set", "model.dropout=2"], "`dropout` must be in [0, 1). Received: 2.0"),
        (["--freeze", "banana"], "`freeze` must be 'all', 'none' or a number of blocks >= 1. Received: 'banana'"),
        (["--freeze", "3"], "`freeze` must be at most the number of blocks (2). Received: 3"),
        (["--transfer-blocks", "3"], "`transfer_blocks` must be in [0, 2] (0: every block). Received: 3"),
        (["--transfer-blocks", "1", "--freeze", "2"], "`freeze` (2) would freeze blocks that `transfer_blocks` (1)"),
        (["--set", "nosuch.key=1"], "Unknown config key(s) nosuch."),
        (["--set", "data.nosuch=1"], "Unknown config key(s) data.nosuch."),
        (["--set", "finetune.epochs"], "`--set` expects KEY=VALUE"),
        (["--set", "finetune.epochs=ten"], "`finetune.epochs` must be of type int. Received: 'ten'"),
        (["--image-size", "8"], "`image_size` must be in [16, 512]. Received: 8"),
        (["--budget", "0"], "`budget_minutes` must be > 0 (or None: epochs as given). Received: 0.0"),
        (["--max-minutes", "-1"], "`max_minutes` must be > 0 (or None: no cap). Received: -1.0"),
        (["--set", "budget_minutes=soon"], "`budget_minutes` must be of type float. Received: 'soon'"),
        (["--config", "missing.json"], "Cannot read config file 'missing.json'"),
        (["predict"], "`predict` needs at least one photo"),
        (["baseline", "photo.jpg"], "Unexpected argument(s) ['photo.jpg'] for stage 'baseline'"),
    ],
)
def test_bad_values_exit_2_before_anything_is_written(tmp_path, capsys, argv, message):
    rc, out, err = _main(capsys, *argv, "--preset", "tiny", "--run-dir", tmp_path / "run")
    assert rc == 2
    assert err.startswith(f"error: {message}"), err
    assert not (tmp_path / "run").exists()


def test_config_file_is_applied_and_checked(tmp_path, capsys):
    (tmp_path / "c.json").write_text(json.dumps({"model": {"dropout": 1.5}}))
    rc, _, err = _main(capsys, "--preset", "tiny", "--config", tmp_path / "c.json", "--run-dir", tmp_path / "run")
    assert rc == 2 and "`dropout` must be in [0, 1). Received: 1.5" in err


# --- a small run on the folder with broken files --------------------------------------------------------------

FOLDER_ARGS = ["--preset", "tiny", "--num-classes", "2", "--labels-per-class", "2", "--set", "data.val_per_class=1",
               "--batch-size", "4", "--epochs", "1"]


@pytest.fixture(scope="module")
def folder_run(image_folder, tmp_path_factory):
    """A baseline trained for one epoch on the small folder; (run dir, exit status, stdout)."""
    run_dir = tmp_path_factory.mktemp("folder") / "run"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = run.main(["baseline", "--data-dir", image_folder.root, "--run-dir", str(run_dir), *FOLDER_ARGS])
    return run_dir, rc, out.getvalue()


def test_broken_files_are_skipped_and_listed(folder_run, image_folder):
    run_dir, rc, out = folder_run
    assert rc == 0
    assert f"Skipped 4 unreadable photo(s); listed in {run_dir / 'skipped.json'}" in out
    skipped = json.loads((run_dir / "skipped.json").read_text())
    assert skipped["count"] == 4
    assert {key for key, _ in skipped["files"]} == set(image_folder.bad.values())
    assert all(reason for _, reason in skipped["files"])
    split = json.loads((run_dir / "split.json").read_text())
    assert split["skipped"] == 4 and split["classes"] == ["beagle", "samoyed"]
    used = {item[0] if isinstance(item, list) else item
            for part in ("labelled", "val", "test", "unlabelled", "unlabelled_val") for item in split[part]}
    assert not used & set(image_folder.bad.values())
    assert set(image_folder.odd.values()) <= used  # greyscale, CMYK and PNG-named files are kept ...
    assert len(train.read_history(str(run_dir / "baseline" / "history.csv"))["loss"]) == 1  # ... and trained on


def test_predict_real_photo_and_non_image(folder_run, image_folder, tmp_path, capsys):
    run_dir = folder_run[0]
    rc, out, err = _main(capsys, "predict", image_folder.source_photo, "--run-dir", run_dir)
    assert rc == 0 and err == ""
    assert f"Model: {run_dir / 'baseline' / 'best.keras'}" in out
    assert image_folder.source_photo in out and "beagle" in out and "samoyed" in out and "%" in out

    (tmp_path / "notes.jpg").write_text("not a photo")
    rc, out, err = _main(capsys, "predict", tmp_path / "notes.jpg", image_folder.source_photo, "--run-dir", run_dir)
    assert rc == 1
    assert f"{tmp_path / 'notes.jpg'}: cannot read it as an image" in err
    assert image_folder.source_photo in out  # the good photo after it is still classified


def test_a_missing_photo_is_reported_before_tensorflow_loads(folder_run, image_folder, capsys, monkeypatch):
    import ssl_keras.quiet

    monkeypatch.setattr(ssl_keras.quiet, "import_tensorflow", lambda: pytest.fail("TensorFlow was loaded"))
    rc, out, err = _main(capsys, "predict", image_folder.source_photo, "missing.jpg", "--run-dir", folder_run[0])
    assert rc == 2 and out == ""
    assert err.startswith("error: No such photo: 'missing.jpg'. Expected the path of a JPEG, PNG, GIF or BMP")


def test_predict_takes_the_run_dir_before_or_after_the_photo(folder_run, image_folder, capsys):
    run_dir = folder_run[0]
    for argv in (["predict", image_folder.source_photo, "--run-dir", run_dir],
                 ["predict", "--run-dir", run_dir, image_folder.source_photo]):
        rc, out, err = _main(capsys, *argv)
        assert rc == 0 and err == "" and image_folder.source_photo in out


def test_whole_pipeline_checks_tfjs_before_training(tmp_path, capsys, image_folder, monkeypatch):
    from ssl_keras import export

    def missing():
        raise ValueError("TF.js is not installed: tf.min.js does not exist. Run `npm ci`.")

    monkeypatch.setattr(export, "tfjs_script_path", missing)
    rc, _, err = _main(capsys, "--preset", "tiny", "--data-dir", image_folder.root, "--run-dir", tmp_path / "run")
    assert rc == 2 and "npm ci" in err
    assert not os.path.exists(tmp_path / "run" / "baseline")  # nothing trained


def test_resume_needs_a_run(capsys):
    rc, _, err = _main(capsys, "evaluate")  # in an empty working directory: no models/ at all
    assert rc == 2 and "No run found under models/" in err


# --- every path and config file is checked before work starts ------------------------------------------------


@pytest.mark.parametrize("content, words", [
    ("[1, 2]", "holds a JSON list. Expected a JSON object"),
    ("\"text\"", "holds a JSON str. Expected a JSON object"),
    ("{\"model\": [1]}", "`model` must be a mapping"),
    ("{\"model\": {\"filters\": {\"a\": 1}}}", "`model.filters` must be a list"),
    ("[[[[" * 5000 + "]]]]" * 5000, "Cannot read config file"),  # too deep for the JSON parser
    ("{not json", "Cannot read config file"),
])
def test_config_files_are_checked_for_their_shape(tmp_path, capsys, content, words):
    (tmp_path / "c.json").write_text(content)
    rc, _, err = _main(capsys, "--preset", "tiny", "--config", tmp_path / "c.json", "--run-dir", tmp_path / "run")
    assert rc == 2 and words in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag", ["--run-dir", "--export-dir"])
def test_a_path_under_a_file_is_refused_before_work_starts(tmp_path, capsys, flag):
    (tmp_path / "file").write_text("")
    argv = ["--preset", "tiny", "--data-dir", tmp_path, "--run-dir", tmp_path / "run"]
    rc, _, err = _main(capsys, *argv, flag, tmp_path / "file" / "sub")
    assert rc == 2 and f"{flag} '{tmp_path / 'file' / 'sub'}' cannot be made: '{tmp_path / 'file'}' is a file" in err
    rc, _, err = _main(capsys, *argv, flag, tmp_path / "file")
    assert rc == 2 and f"{flag} '{tmp_path / 'file'}' is a file. Expected a folder" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv", [["evaluate"], ["report"], ["export"], ["methods"], ["predict", __file__],
                                  ["baseline", "--resume"], ["--resume"]])
def test_a_stage_that_needs_a_run_refuses_a_missing_one_without_a_download(tmp_path, capsys, monkeypatch, argv):
    import ssl_keras.quiet

    monkeypatch.setattr(ssl_keras.quiet, "import_tensorflow", lambda: pytest.fail("TensorFlow was loaded"))
    rc, out, err = _main(capsys, *argv, "--run-dir", tmp_path / "nope")
    assert rc == 2 and f"'{tmp_path / 'nope'}' is not a run directory (it has no config.json)" in err
    assert not (tmp_path / "nope").exists()
