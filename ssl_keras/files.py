"""Committing a file: written under a temporary name in its folder, flushed to disk, then renamed over its path.

A reader (or a resumed run) sees the old file or the new one, never half of one: `os.replace` is atomic
within a folder, and the data is on disk (`fsync`) before the rename makes it visible. Every file a run,
a stage or an export commits goes through `commit`.
"""

from __future__ import annotations

import json
import os
import shutil

TMP_PREFIX = ".tmp-"


def temporary_path(path: str) -> str:
    """The name `path` is written under before its commit: hidden, in the same folder, with the same ending
    (Keras picks the format of `model.save` and `save_weights` by it)."""
    folder, name = os.path.split(path)
    return os.path.join(folder, TMP_PREFIX + name)


def commit(path: str, write) -> None:
    """Makes the file at `path` with `write(tmp)`, flushes `tmp` to disk and renames it over `path`.

    Args:
        path: the file to make or replace.
        write: a function that writes the whole file at the path it is given, e.g. `model.save`.
    """
    tmp = temporary_path(path)
    write(tmp)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_text(path: str, text: str) -> None:
    """Commits `text` as the file at `path`."""

    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    commit(path, write)


def write_json(path: str, obj) -> None:
    """Commits `obj` as the JSON file at `path` (indented by 1)."""
    write_text(path, json.dumps(obj, indent=1))


def copy(source: str, path: str) -> None:
    """Commits a copy of the file `source` at `path`."""
    commit(path, lambda tmp: shutil.copyfile(source, tmp))


def read_json(path: str):
    with open(path) as f:
        return json.load(f)
