"""`ssl_keras.serving.core`: the model store (versions found, refused, replaced), version parsing, short messages."""

import os
import shutil

import pytest

from serving_helpers import exported


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return exported(tmp_path_factory)


@pytest.mark.slow
def test_a_newer_version_is_picked_up(model, tmp_path):
    from ssl_keras.serving import core

    base = tmp_path / "dog_breeds"
    shutil.copytree(model["base_path"], base)
    store = core.ModelStore(str(base), "dog_breeds")
    assert sorted(store.servables) == [1]
    shutil.copytree(base / "1", tmp_path / "tmp-version")
    os.rename(tmp_path / "tmp-version", base / "2")
    store.refresh()
    assert sorted(store.servables) == [2] and store.get("dog_breeds", None).version == 2
    with pytest.raises(core.RequestError, match="Specific"):
        store.get("dog_breeds", "1")


def test_store_refuses_a_missing_model(tmp_path):
    from ssl_keras.serving import core

    with pytest.raises(ValueError, match="is not a folder"):
        core.ModelStore(str(tmp_path / "nothing"), "dog_breeds")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No version folder"):
        core.ModelStore(str(tmp_path / "empty"), "dog_breeds")


def test_versions_are_ascii_digits_that_fit_int64():
    from ssl_keras.serving import core

    assert core.parse_version("7") == 7 and core.parse_version(None) is None and core.parse_version(3) == 3
    assert core.parse_version("9" * 18) == 10**18 - 1
    for bad in ("\u00b2", "\u0661", "-1", "+1", "1.0", " 1", "", "9" * 19):
        with pytest.raises(core.RequestError, match="must be an integer of ASCII digits") as e:
            core.parse_version(bad)
        assert e.value.status == 400


def test_short_cuts_long_text_and_says_how_long_it_was():
    from ssl_keras.serving import core

    assert core.short("dog") == "dog"
    assert core.short("x" * 100) == "x" * 80 + "... (100 characters)"
    assert core.short("x" * 300, 200) == "x" * 200 + "... (300 characters)"
