"""Your own photos: a labelled folder, unlabelled folders (`--unlabelled-dir`), optional val/test folders.

Built in temporary folders from real photos of `../shared/data/dogs`: the split, the pool, the bad-input errors
(each before anything is written), `--pretext-from`, Wilson intervals, and the `tiny` preset end to end.
"""

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import run_main

from ssl_keras import evaluate, sources, split


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def _photos(dogs, breed, prefix, n, start=0):
    names = sorted(f for f in os.listdir(Path(dogs) / breed) if f.startswith(prefix))[start:start + n]
    return [Path(dogs) / breed / name for name in names]


@pytest.fixture(scope="module")
def own(dogs_dir, tmp_path_factory):
    """labelled/{beagle,samoyed,pug}/ (6 photos each), park/ (nested, 40 photos of any breed, a non-image, a
    hidden file, a byte copy of a test photo, and more photos than any class), test/{beagle,samoyed}/ (3 each)."""
    root = tmp_path_factory.mktemp("own")
    for breed, prefix in (("beagle", "imagewoof_train_"), ("samoyed", "imagewoof_train_"), ("pug", "stanforddogs_")):
        (root / "labelled" / breed).mkdir(parents=True)
        for p in _photos(dogs_dir, breed, prefix, 6):
            shutil.copy(p, root / "labelled" / breed)
    for breed in ("beagle", "samoyed"):
        (root / "test" / breed).mkdir(parents=True)
        for p in _photos(dogs_dir, breed, "imagewoof_val_", 3):
            shutil.copy(p, root / "test" / breed)
    park = root / "park"
    for i, (breed, prefix) in enumerate((("beagle", "imagewoof_train_"), ("boxer", "stanforddogs_"),
                                         ("dingo", "imagewoof_train_"), ("pug", "stanforddogs_"))):
        (park / f"day{i}" / "morning").mkdir(parents=True)
        for j, p in enumerate(_photos(dogs_dir, breed, prefix, 10, start=10)):
            shutil.copy(p, park / f"day{i}" / "morning" / f"IMG_{i}{j:03d}.jpg")
    (park / "notes.txt").write_text("sunny")
    (park / ".DS_Store").write_bytes(b"\0\1")
    copy_of_test = next((root / "test" / "beagle").iterdir())
    shutil.copy(copy_of_test, park / "IMG_copy.jpg")
    return root


def _split(own, **kwargs):
    source = sources.PhotoFolders(str(own / "labelled"), [str(own / "park")], test=kwargs.pop("test", None))
    records = source.records()
    classes = split.own_classes(records)
    hashes = sources.content_hashes(source, [r.key for r in records])
    return source, records, split.folder_split(records, classes, hashes=hashes, **kwargs)


def test_an_unlabelled_folder_never_becomes_a_class(own):
    source, records, s = _split(own)
    assert s["classes"] == ["beagle", "pug", "samoyed"]  # park holds more photos than any class, and is none
    assert {r.label for r in records if r.key.startswith("unlabelled0/")} == {None}
    assert source.non_images == 1  # notes.txt; the hidden file is not counted, not listed
    assert not any(".DS_Store" in r.key for r in records)
    assert len([r for r in records if r.label is None]) == 41  # nested folders read recursively


def test_every_labelled_photo_trains_with_all(own):
    _, _, s = _split(own, val_fraction=0.2, test_fraction=0.2, seed=3)
    per_class = {c: sum(1 for _, y in s[part] if y == i) for i, c in enumerate(s["classes"])
                 for part in ("labelled",)}
    val = {c: sum(1 for _, y in s["val"] if y == i) for i, c in enumerate(s["classes"])}
    test = {c: sum(1 for _, y in s["test"] if y == i) for i, c in enumerate(s["classes"])}
    assert val == {"beagle": 1, "pug": 1, "samoyed": 1} and test == {"beagle": 1, "pug": 1, "samoyed": 1}
    assert per_class == {"beagle": 4, "pug": 4, "samoyed": 4}  # 6 - 1 - 1: every other labelled photo trains
    _, _, capped = _split(own, labels_per_class=2, seed=3)
    assert len(capped["labelled"]) == 6
    assert capped["pool_from_labelled"] == 6
    # the 2 labelled photos past the cap in each class are unlabelled now
    keys = set(capped["unlabelled"] + capped["unlabelled_val"])
    assert sum(k.startswith("labelled/") for k in keys) == 6 + 3 * 2


def test_no_validation_or_test_photo_nor_a_byte_copy_reaches_the_pool(own):
    _, _, s = _split(own, test=str(own / "test"), seed=1)
    pool = set(s["unlabelled"] + s["unlabelled_val"])
    held = {k for k, _ in s["val"] + s["test"]}
    assert held and not pool & held
    assert s["pool_duplicates"] == ["unlabelled0/IMG_copy.jpg"]  # the same bytes as a test photo
    assert "unlabelled0/IMG_copy.jpg" not in pool
    assert {k for k, _ in s["labelled"]} <= pool  # the training photos' pixels are unlabelled photos too
    assert all(k.startswith("test/") for k, _ in s["test"]) and len(s["test"]) == 6  # the test folder, all of it
    assert sum(1 for _, y in s["labelled"] + s["val"] if y == s["classes"].index("pug")) == 6  # no test: all 6


def test_a_photo_in_two_classes_is_an_error(own, tmp_path):
    labelled = tmp_path / "labelled"
    shutil.copytree(own / "labelled", labelled)
    shutil.copy(next((labelled / "beagle").iterdir()), labelled / "pug" / "same.jpg")
    source = sources.PhotoFolders(str(labelled), [str(own / "park")])
    records = source.records()
    with pytest.raises(ValueError, match="filed under two classes"):
        split.folder_split(records, ["beagle", "pug", "samoyed"],
                           hashes=sources.content_hashes(source, [r.key for r in records]))


@pytest.mark.parametrize("correct, n, low, high", [
    (5, 10, 0.2366, 0.7634), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (81, 263, 0.2553, 0.3662)])
def test_wilson_interval_known_cases(correct, n, low, high):
    lo, hi = evaluate.wilson_interval(correct, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)
    assert evaluate.scored(correct / n, n)["interval_95"] == [lo, hi]


# --- bad input: one `error:` line naming the input, before anything is written -----------------------------


def _bad(capsys, tmp_path, own, *extra, labelled=None):
    run_dir = tmp_path / "run"
    rc, out, err = run_main(capsys, "--preset", "tiny", "--data-dir", labelled or own / "labelled",
                            "--run-dir", run_dir, *extra)
    assert rc == 2 and not run_dir.exists(), (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_bad_unlabelled_folders(capsys, tmp_path, own):
    err = _bad(capsys, tmp_path, own, "--unlabelled-dir", tmp_path / "nope")
    assert "--unlabelled-dir folder" in err and "nope" in err and "does not exist" in err
    (tmp_path / "a_file.jpg").write_bytes(b"x")
    err = _bad(capsys, tmp_path, own, "--unlabelled-dir", tmp_path / "a_file.jpg")
    assert "a_file.jpg" in err and "is a file" in err
    (tmp_path / "empty").mkdir()
    err = _bad(capsys, tmp_path, own, "--unlabelled-dir", tmp_path / "empty")
    assert "empty" in err and "has no photos" in err
    (tmp_path / "texts" / "sub").mkdir(parents=True)
    (tmp_path / "texts" / "sub" / "a.txt").write_text("a")
    err = _bad(capsys, tmp_path, own, "--unlabelled-dir", tmp_path / "texts")
    assert "has no photos (only 1 non-image file(s))" in err


def test_symlink_loop(capsys, tmp_path, own):
    loop = tmp_path / "loop"
    shutil.copytree(own / "park" / "day0", loop / "day0")
    os.symlink(loop, loop / "day0" / "back")
    err = _bad(capsys, tmp_path, own, "--unlabelled-dir", loop)
    assert "symlink loop" in err and "back" in err


def test_symlinks_are_followed_once(tmp_path, own):
    linked = tmp_path / "linked"
    linked.mkdir()
    os.symlink(own / "park" / "day1", linked / "a")
    os.symlink(own / "park" / "day1", linked / "b")  # the same folder twice: listed once
    photos, _ = sources.list_photos(str(linked))
    assert len(photos) == 10 and all(p.startswith("a/") for p in photos)


def test_a_class_with_one_photo(capsys, tmp_path, own):
    labelled = tmp_path / "labelled"
    shutil.copytree(own / "labelled", labelled)
    for p in sorted((labelled / "pug").iterdir())[1:]:
        p.unlink()
    err = _bad(capsys, tmp_path, own, "--unlabelled-dir", own / "park", labelled=labelled)
    assert "Class 'pug' has 1 labelled photo(s)" in err and "needs at least 3" in err


def test_a_test_class_the_labelled_folder_lacks(capsys, tmp_path, own):
    test = tmp_path / "test"
    shutil.copytree(own / "test", test)
    shutil.copytree(own / "test" / "beagle", test / "corgi")
    err = _bad(capsys, tmp_path, own, "--unlabelled-dir", own / "park", "--test-dir", test)
    assert "--test-dir folder" in err and "['corgi']" in err and "the labelled folder lacks" in err


def test_pretext_from_a_file_that_is_not_a_rotation_model(capsys, tmp_path, own, tiny_run):
    err = _bad(capsys, tmp_path, own, "--unlabelled-dir", own / "park", "--pretext-from",
               Path(tiny_run) / "baseline" / "best.keras")
    assert "is not a rotation model" in err
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    err = _bad(capsys, tmp_path, own, "--unlabelled-dir", own / "park", "--pretext-from", tmp_path / "junk.keras")
    assert "junk.keras" in err and "not a Keras model" in err
    err = _bad(capsys, tmp_path, own, "--unlabelled-dir", own / "park", "--pretext-from", tiny_run,
               "--image-size", "48")
    assert "trained at image size 32 px; this run's rotation task is at 48 px" in err
    err = _bad(capsys, tmp_path, own, "--unlabelled-dir", own / "park", "--pretext-from", tiny_run,
               "--set", "model.filters=[8,24]")
    assert "another backbone" in err and "filters [8, 24]" in err


# --- end to end -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(own, tmp_path_factory):
    """The tiny preset on your own photos, every stage, export included."""
    from ssl_keras import run

    work = tmp_path_factory.mktemp("tinyrun")
    run_dir, export_dir = work / "run", work / "export"
    rc = run.main(["--preset", "tiny", "--data-dir", str(own / "labelled"), "--unlabelled-dir", str(own / "park"),
                   "--test-dir", str(own / "test"), "--run-dir", str(run_dir), "--export-dir", str(export_dir),
                   "--method", "all"])
    assert rc == 0
    return str(run_dir)


@pytest.mark.slow
def test_tiny_end_to_end_with_your_own_photos(tiny_run, own):
    report = json.loads((Path(tiny_run) / "report.json").read_text())
    assert report["classes"] == ["beagle", "pug", "samoyed"]
    c = report["counts"]
    assert c["test"] == 6 and c["labelled"] == 15 and c["val"] == 3  # 18 labelled photos: 5 train, 1 val a class
    assert c["pool_from_labelled"] == 15 and c["pool_duplicates_left_out"] == 1 and c["non_images"] == 1
    for key in ("baseline", "ssl", "rotation_aux", "rotation_aux_scratch", "self_training", "fixmatch", "best"):
        t = report[key]["test"]
        assert t["photos"] == 6 and t["interval_95"][0] <= t["accuracy"] <= t["interval_95"][1]
    assert report["baseline"]["val"]["photos"] == 3
    rounds = report["self_training"]["rounds"]
    assert rounds and rounds[0]["class_unknown"] + rounds[0]["other_breeds"] <= rounds[0]["pseudo_labelled"]
    export = json.loads((Path(tiny_run) / "export.json").read_text())
    assert export["classes"] == ["beagle", "pug", "samoyed"]
    assert (Path(tiny_run).parent / "export" / "web" / "index.html").is_file()


@pytest.mark.slow
def test_pretext_from_skips_the_rotation_stage(tiny_run, own, tmp_path, capsys):
    rc, out, err = run_main(capsys, "--preset", "tiny", "--data-dir", own / "labelled", "--unlabelled-dir",
                            own / "park", "--pretext-from", tiny_run, "--run-dir", tmp_path / "again",
                            "--method", "pretrain", "--set", "data.test_fraction=0.3")
    assert rc == 0, err
    assert "[pretext] reused the rotation model" in out and "rotated samples an epoch" not in out
    report = json.loads((tmp_path / "again" / "report.json").read_text())
    assert report["pretext_from"] == str(Path(tiny_run, "pretext", "best.keras").resolve())
    assert report["ssl"]["weights_copied"] > 0


@pytest.mark.slow
def test_predict_on_your_own_run(tiny_run, own, capsys):
    photo = next((own / "test" / "samoyed").iterdir())
    rc, out, err = run_main(capsys, "predict", "--run-dir", tiny_run, photo)
    assert rc == 0, err
    assert photo.name in out and sum(c in out for c in ("beagle", "pug", "samoyed")) == 3


@pytest.mark.parametrize("n_val, scores, shipped", [
    (20, {"baseline": 0.30, "finetune_1": 0.45, "fixmatch": 0.40}, "fixmatch"),  # 45 vs 40 % of 20: noise
    (2000, {"baseline": 0.30, "finetune_1": 0.45, "fixmatch": 0.40}, "finetune_1"),  # of 2000: a real gap
    (20, {"baseline": 0.30, "finetune_1": 0.35, "fixmatch": 0.80}, "fixmatch"),
    (20, {"baseline": 0.90, "finetune_1": 0.35, "fixmatch": 0.30}, "baseline"),  # validation can tell: it decides
])
def test_choices_take_the_latest_classifier_validation_cannot_tell_from_the_top(tmp_path, n_val, scores, shipped):
    from ssl_keras import classifier_stage, presets, rundir

    cfg = presets.tiny()
    cfg = type(cfg)(**{**cfg.__dict__, "method": ("pretrain", "fixmatch"), "also_frozen": False})
    run = rundir.Run(cfg, str(tmp_path / "run"), log=lambda *a: None)
    rundir.write_json(run.path("split.json"), {"classes": ["a", "b"], "val": [["k", 0]] * n_val, "labelled": [],
                                               "test": [], "unlabelled": [], "unlabelled_val": []})
    for name, score in scores.items():
        os.makedirs(run.path(name))
        rundir.write_json(run.path(name, "stage.json"), {"val_accuracy_last": score})
        Path(run.path(name, "best.keras")).write_bytes(b"")
    assert classifier_stage.top_scorer(run) == max(scores, key=scores.get)
    assert rundir.best_classifier(run).dir == shipped
    assert rundir.best_so_far(run, "fixmatch") == ("baseline" if scores["baseline"] > 0.8 else "finetune_1")
