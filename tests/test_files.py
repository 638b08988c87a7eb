"""files.py: a committed file is whole, on disk before it is renamed into place, and a failed write keeps the old one."""

import json
import os

import pytest

from ssl_keras import files


def test_write_json_commits_the_file_and_leaves_nothing_else(tmp_path):
    path = str(tmp_path / "report.json")
    files.write_json(path, {"accuracy": 0.5, "classes": ["beagle", "pug"]})
    files.write_json(path, {"accuracy": 0.75})
    assert os.listdir(tmp_path) == ["report.json"]
    assert files.read_json(path) == {"accuracy": 0.75}
    assert (tmp_path / "report.json").read_text() == json.dumps({"accuracy": 0.75}, indent=1)


def test_a_write_that_fails_half_way_keeps_the_previous_file(tmp_path):
    path = str(tmp_path / "state.json")
    files.write_text(path, "old")

    def half(tmp):
        with open(tmp, "w") as f:
            f.write("ne")
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left"):
        files.commit(path, half)
    assert (tmp_path / "state.json").read_text() == "old"
    files.write_text(path, "new")  # the next commit writes over the leftover temporary file
    assert os.listdir(tmp_path) == ["state.json"] and (tmp_path / "state.json").read_text() == "new"


def test_the_data_is_on_disk_before_the_rename(tmp_path, monkeypatch):
    calls = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append("fsync") or fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: calls.append(("replace", a, b)) or replace(a, b))
    path = str(tmp_path / "history.csv")
    files.write_text(path, "epoch\n0\n")
    assert calls == ["fsync", ("replace", files.temporary_path(path), path)]
    assert os.path.dirname(files.temporary_path(path)) == str(tmp_path)  # the same folder: the rename is atomic


def test_the_temporary_name_keeps_the_ending_keras_reads_the_format_from(tmp_path):
    assert files.temporary_path(str(tmp_path / "best.keras")).endswith(".keras")
    assert files.temporary_path(str(tmp_path / "epoch-3.weights.h5")).endswith(".weights.h5")


def test_copy_commits_the_same_bytes(tmp_path):
    (tmp_path / "a.png").write_bytes(bytes(range(256)))
    files.copy(str(tmp_path / "a.png"), str(tmp_path / "b.png"))
    assert (tmp_path / "b.png").read_bytes() == bytes(range(256))
    assert sorted(os.listdir(tmp_path)) == ["a.png", "b.png"]
