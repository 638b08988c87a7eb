"""The article's dog park, laid out from the shared dog photos as a user's own folders.

    python examples/dog_park.py --labels 10 --out data/dog_park/n10
    python -m ssl_keras.run --preset quick --data-dir data/dog_park/n10/labelled \
        --unlabelled-dir data/dog_park/n10/park --test-dir data/dog_park/n10/test

Makes, from `--source` (default ../shared/data/dogs; ImageWoof's official split is in its file names):
  labelled/<breed>/  N `imagewoof_train_*` photos per ImageWoof breed (seeded choice): the photos you labelled;
  park/              every other photo outside ImageWoof's val split, other breeds included, flattened and
                     renamed park_00001.jpg ... in a seeded order, so no name tells a breed: the dog park;
  test/<breed>/      the `imagewoof_val_*` photos: photos nobody trained or chose on.
Files are hard links where the file system allows (copies otherwise). The layout is written under a temporary
name and renamed into place; an existing `--out` is left alone unless `--force`.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys


def layout(source: str, labels: int, seed: int = 0) -> dict[str, str]:
    """relative path in the layout -> the source photo it holds."""
    breeds = sorted(b for b in os.listdir(source) if os.path.isdir(os.path.join(source, b)))
    woof = [b for b in breeds if any(n.startswith("imagewoof_") for n in os.listdir(os.path.join(source, b)))]
    if not woof:
        raise ValueError(f"{source!r} has no imagewoof_* photos. Expected the shared dog photos "
                         "(one folder per breed, ImageWoof's split in the file names).")
    rng, out, park = random.Random(seed), {}, []
    for breed in breeds:
        names = sorted(os.listdir(os.path.join(source, breed)))
        labelled = set()
        if breed in woof:
            train = [n for n in names if n.startswith("imagewoof_train_")]
            if len(train) < labels:
                raise ValueError(f"Breed {breed!r} has {len(train)} ImageWoof train photos, fewer than --labels "
                                 f"{labels}.")
            rng.shuffle(train)
            labelled = set(train[:labels])
        for n in names:
            place = "test" if n.startswith("imagewoof_val_") else "labelled" if n in labelled else None
            if place:
                out[f"{place}/{breed}/{n}"] = os.path.join(source, breed, n)
            else:
                park.append(os.path.join(source, breed, n))
    park.sort()
    rng.shuffle(park)
    for i, path in enumerate(park, start=1):
        out[f"park/park_{i:05d}{os.path.splitext(path)[1].lower()}"] = path
    return out


def write(files: dict[str, str], out: str) -> None:
    """Hard-links (or copies) `files` under `out`, made under a temporary name and renamed into place."""
    tmp = out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, src in files.items():
        dest = os.path.join(tmp, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        try:
            os.link(src, dest)
        except OSError:
            shutil.copyfile(src, dest)
    os.rename(tmp, out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--labels", type=int, default=10, help="labelled photos per breed (default 10)")
    p.add_argument("--out", help="where the layout goes (default: data/dog_park/n<labels>)")
    p.add_argument("--source", default=os.path.join("..", "shared", "data", "dogs"))
    p.add_argument("--seed", type=int, default=0, help="which photos are labelled and the park's order")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    args = p.parse_args(argv)
    out = args.out or os.path.join("data", "dog_park", f"n{args.labels}")
    try:
        if not os.path.isdir(args.source):
            raise ValueError(f"--source {args.source!r} is not a folder. Expected the shared dog photos.")
        if args.labels < 1:
            raise ValueError(f"--labels must be >= 1. Received: {args.labels}")
        if os.path.exists(out):
            if not args.force:
                raise ValueError(f"{out!r} exists. Pass --force to replace it.")
            shutil.rmtree(out)
        files = layout(args.source, args.labels, args.seed)
        write(files, out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    parts = {k: sum(1 for r in files if r.startswith(k + "/")) for k in ("labelled", "park", "test")}
    print(f"{out}: {parts['labelled']} labelled photos, {parts['park']} in park/, {parts['test']} test photos.")
    print(f"Train on it:\n  python -m ssl_keras.run --preset quick --data-dir {out}/labelled "
          f"--unlabelled-dir {out}/park --test-dir {out}/test")
    return 0


if __name__ == "__main__":
    sys.exit(main())
