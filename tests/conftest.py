"""Shared fixtures: the real dog photos, and a small ImageFolder of real and broken files built from them.

No photo is committed: the folder is built in a temporary directory from `<repo>/../shared/data/dogs`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOGS = REPO.parent / "shared" / "data" / "dogs"


def load_benchmark(name: str, folder: str = "benchmarks"):
    """A script of `benchmarks/` (or `research/`) as a module; its folder is on sys.path, as when it runs."""
    if str(REPO / folder) not in sys.path:
        sys.path.insert(0, str(REPO / folder))
    spec = importlib.util.spec_from_file_location(f"{folder}_{name}", REPO / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Files that cannot be used: they must be skipped, each with a reason.
BAD = ("corrupt.jpg", "truncated.jpg", "empty.jpg", "text.jpg")
# Odd but valid files: they must be kept and decode to (S, S, 3).
ODD = ("greyscale.jpg", "cmyk.jpg", "png_named.jpg")


@pytest.fixture(scope="session")
def dogs_dir() -> str:
    """The shared dog photos (ImageFolder layout), or a skip when this checkout has none beside it."""
    if not DOGS.is_dir():
        pytest.skip(f"the dog photos are not at {DOGS} (expected `<repo>/../shared/data/dogs`)")
    return str(DOGS)


@dataclass
class Folder:
    """A small ImageFolder: `root`, its classes, and the keys (`<class>/<file>`) of the files planted in it."""

    root: str
    classes: list[str]
    bad: dict[str, str] = field(default_factory=dict)  # name in BAD -> key
    odd: dict[str, str] = field(default_factory=dict)  # name in ODD -> key
    photos: list[str] = field(default_factory=list)  # keys of the copied real photos
    source_photo: str = ""  # the real photo the odd and bad files were made from


def _copy(dogs: Path, breed: str, root: Path, prefix: str, n: int) -> list[str]:
    names = sorted(f for f in os.listdir(dogs / breed) if f.startswith(prefix))[:n]
    (root / breed).mkdir(exist_ok=True)
    for name in names:
        shutil.copyfile(dogs / breed / name, root / breed / name)
    return [f"{breed}/{name}" for name in names]


@pytest.fixture(scope="session")
def image_folder(dogs_dir, tmp_path_factory) -> Folder:
    """beagle: 4 train + 2 declared-test photos, 3 odd files, 4 bad files; samoyed: 4 train + 2 test;
    pug (no declared split): 4 photos.

    Read-only for the tests (it is shared by the whole session).
    """
    from PIL import Image

    dogs, root = Path(dogs_dir), tmp_path_factory.mktemp("imagefolder")
    photos = []
    for breed in ("beagle", "samoyed"):
        photos += _copy(dogs, breed, root, "imagewoof_train_", 4)
        photos += _copy(dogs, breed, root, "imagewoof_val_", 2)
    photos += _copy(dogs, "pug", root, "stanforddogs_", 4)
    source = root / photos[0]
    raw = source.read_bytes()
    beagle = root / "beagle"
    (beagle / "corrupt.jpg").write_bytes(bytes(range(256)) * 8)
    (beagle / "truncated.jpg").write_bytes(raw[: len(raw) // 2])
    (beagle / "empty.jpg").write_bytes(b"")
    (beagle / "text.jpg").write_text("This is not a photo of a dog.\n")
    with Image.open(source) as im:
        im.convert("L").save(beagle / "greyscale.jpg", "JPEG", quality=90)
        im.convert("CMYK").save(beagle / "cmyk.jpg", "JPEG", quality=90)
        im.save(beagle / "png_named.jpg", "PNG")
    return Folder(
        root=str(root),
        classes=["beagle", "pug", "samoyed"],
        bad={n: f"beagle/{n}" for n in BAD},
        odd={n: f"beagle/{n}" for n in ODD},
        photos=photos,
        source_photo=str(source),
    )


def run_main(capsys, *argv):
    """`python -m ssl_keras.run ARGV` in-process: (exit status, stdout, stderr); never a traceback."""
    from ssl_keras import run

    rc = run.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err
