"""Starts a run from another run's finished stage, to vary only the stages after it.

    python research/copy_stage.py models/results-default/seed0 models/explore-drop02 pretext baseline
    python -m ssl_keras.run finetune --run-dir models/explore-drop02 --resume --set model.dropout=0.2

Answers: does a change to the labelled stages help on the *same* rotation model? (Runs are not bit-repeatable
on a CPU, so a fresh rotation model would add its own noise.) Copies the source run's config.json, split.json
and skipped.json, then the stages (`rundir.copy_stage`), into a new run directory.
"""

import argparse
import os
import shutil
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="a run directory with the finished stage")
    p.add_argument("target", help="the new run directory")
    p.add_argument("stages", nargs="*", default=["pretext"], help="the stages to copy (default: pretext)")
    args = p.parse_args(argv)
    from ssl_keras import quiet

    quiet.import_tensorflow()
    from ssl_keras import config as config_lib
    from ssl_keras import rundir

    try:
        for name in ("config.json", "split.json"):
            if not os.path.isfile(os.path.join(args.source, name)):
                raise ValueError(f"{args.source!r} has no {name}. Expected a run directory.")
        os.makedirs(args.target, exist_ok=True)
        for name in ("config.json", "split.json", "skipped.json"):
            if os.path.exists(os.path.join(args.source, name)):
                shutil.copy(os.path.join(args.source, name), args.target)
        cfg = config_lib.from_dict(rundir.read_json(os.path.join(args.target, "config.json")))
        run = rundir.Run(cfg, args.target, resume=True)
        for stage in args.stages:
            rundir.copy_stage(args.source, run, stage)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.target}: {', '.join(args.stages)} copied from {args.source}. "
          f"Continue with: python -m ssl_keras.run STAGE --run-dir {args.target} --resume")
    return 0


if __name__ == "__main__":
    sys.exit(main())
