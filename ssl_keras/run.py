"""`python -m ssl_keras.run [STAGE] [options]`: the whole experiment, or one stage of it.

The command line only: it parses, resolves the config (preset -> --config file ->
--set -> flags, or a run's saved config), checks every path before any work, calls
a stage of `ssl_keras.experiment` and returns an exit code. It is the only module
that reads `sys.argv`, the environment and the seed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from ssl_keras import config as config_lib
from ssl_keras import experiment, presets

MODELS_DIR = "models"
# The `STAGE` argument -> the stages it runs: `all` is every stage of `experiment.STAGES`, `predict` none of them.
STAGE_CHOICES = {"all": tuple(experiment.STAGES), **{s: (s,) for s in experiment.STAGES}, "predict": ()}
STARTS_RUN = ("all", "baseline", "pretext")  # the stages that may make a new run directory


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ssl_keras.run",
        description="Rotation self-supervision on dog photos: a few labels, many unlabelled photos.",
        epilog=f"Stages: all (default: {', '.join(experiment.STAGES)}), {', '.join(experiment.STAGES)}, "
               "predict PHOTO...",
    )
    p.add_argument("stage", nargs="?", default="all", choices=list(STAGE_CHOICES), help="what to run (default: all)")
    p.add_argument("images", nargs="*", help="photos for `predict`")
    p.add_argument("--preset", choices=sorted(presets.PRESETS), help="named config (default: default)")
    p.add_argument("--config", metavar="FILE", help="JSON file of config overrides, applied after the preset")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="any config value, e.g. --set finetune.learning_rate=3e-4 (repeatable)")
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", help="ImageFolder directory (one sub-folder per class); default: TFDS stanford_dogs")
    g.add_argument("--unlabelled-dir", action="append", metavar="DIR",
                   help="your own photos: every photo under DIR (any layout) is unlabelled; repeatable. Then "
                        "--data-dir holds only labelled photos, and all of them train (--labels-per-class all)")
    g.add_argument("--val-dir", help="with --unlabelled-dir: an ImageFolder of validation photos (same classes)")
    g.add_argument("--test-dir", help="with --unlabelled-dir: an ImageFolder of test photos (same classes)")
    g.add_argument("--val-fraction", type=float,
                   help="with --unlabelled-dir and no --val-dir: validation share of each class (default 0.2)")
    g.add_argument("--test-fraction", type=float,
                   help="test share of each class when no test split is given (default 0.2)")
    g.add_argument("--tfds-name", help="TFDS data set when no --data-dir is given")
    g.add_argument("--classes", help="comma-separated class folder names to label")
    g.add_argument("--num-classes", type=int, help="label the N classes with the most photos (default 10)")
    g.add_argument("--labels-per-class", type=_labels_per_class, metavar="N|all",
                   help="labelled training photos per class (default 57; all with --unlabelled-dir)")
    g.add_argument("--max-unlabelled", type=int, help="cap on the unlabelled pool (0: all)")
    g.add_argument("--image-size", type=int, help="square input size in pixels")
    g.add_argument("--batch-size", type=int)
    g = p.add_argument_group("training")
    g.add_argument("--method", help="comma-separated methods after the article's stages: "
                                    f"{', '.join(config_lib.METHODS)} (pretrain: the article's stages only), or all")
    g.add_argument("--epochs", type=int, help="epochs of the labelled stages (baseline, finetune)")
    g.add_argument("--pretext-epochs", type=int, help="epochs of the rotation task")
    g.add_argument("--pretext-from", metavar="RUN_DIR_OR_MODEL",
                   help="reuse a finished rotation model (a run directory or its pretext/best.keras) instead of "
                        "training one")
    g.add_argument("--budget", type=float, metavar="MINUTES",
                   help="fit the training stages and evaluate into MINUTES on this machine: each stage's epochs "
                        "scaled from its measured speed, in the config's proportions; config.json gets the epochs")
    g.add_argument("--max-minutes", type=float, metavar="MINUTES",
                   help="at most MINUTES for the training stages and evaluate on this machine: once a stage's speed "
                        "is measured, the stages not yet begun lose epochs (never gain) if the run would take longer")
    g.add_argument("--freeze", help="backbone blocks frozen when fine-tuning: all, none or N (first N blocks)")
    g.add_argument("--transfer-blocks", type=int,
                   help="copy only the first N pretext blocks; later blocks start fresh (default 0: all)")
    g.add_argument("--no-augment", action="store_true", help="no flip/translate/zoom in the labelled stages")
    g.add_argument("--mixed-precision", action="store_true", help="float16 compute (for GPUs)")
    g.add_argument("--strategy", choices=config_lib.STRATEGIES, help="distribution strategy")
    g.add_argument("--seed", type=int)
    g = p.add_argument_group("run directory and outputs")
    g.add_argument("--run-dir", help=f"where this run's files go (default: a new folder under {MODELS_DIR}/)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --run-dir (default: the newest run) from its last finished epoch")
    g.add_argument("--model", help="a .keras classifier for predict/export (default: the run's best by validation)")
    g.add_argument("--export-dir", default="export", help="where `export` writes (default: export/)")
    g.add_argument("--model-name", default="dog_breeds", help="name of the exported model (default: dog_breeds)")
    g.add_argument("--top-k", type=int, help="breeds listed per prediction (default 5)")
    return p


def _labels_per_class(text: str) -> int:
    """`--labels-per-class`: a count >= 1, or `all` (0 in the config)."""
    if text == "all":
        return 0
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of photos or 'all'. Received: {text!r}") from None


def flag_overrides(args) -> dict:
    """The config values the command-line flags set (unset flags set nothing)."""
    data, out = {}, {}
    for key in ("data_dir", "tfds_name", "num_classes", "labels_per_class", "max_unlabelled", "image_size",
                "batch_size", "val_dir", "test_dir", "val_fraction", "test_fraction"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    if args.unlabelled_dir:
        data["unlabelled_dirs"] = args.unlabelled_dir
        data.setdefault("labels_per_class", 0)  # your own photos: every label trains
    if args.pretext_from:
        out["pretext_from"] = args.pretext_from
    if args.classes:
        data["classes"] = [c.strip() for c in args.classes.split(",") if c.strip()]
    if data:
        out["data"] = data
    if args.method:
        out["method"] = list(config_lib.METHODS) if args.method == "all" else args.method
    if args.epochs is not None:
        out["baseline"] = {"epochs": args.epochs}
        out["finetune"] = {"epochs": args.epochs}
    if args.pretext_epochs is not None:
        out["pretext"] = {"epochs": args.pretext_epochs}
    if args.no_augment:
        out.setdefault("baseline", {})["augment"] = False
        out.setdefault("finetune", {})["augment"] = False
    for key in ("freeze", "transfer_blocks", "strategy", "seed", "top_k"):
        if getattr(args, key) is not None:
            out[key] = getattr(args, key)
    if args.mixed_precision:
        out["mixed_precision"] = True
    if args.budget is not None:
        out["budget_minutes"] = args.budget
    if args.max_minutes is not None:
        out["max_minutes"] = args.max_minutes
    return out


def newest_run(models_dir: str = MODELS_DIR) -> str | None:
    """The most recently changed run directory (one with a config.json) under `models_dir`."""
    if not os.path.isdir(models_dir):
        return None
    runs = [os.path.join(models_dir, d) for d in os.listdir(models_dir)
            if os.path.isfile(os.path.join(models_dir, d, "config.json"))]
    return max(runs, key=lambda d: os.path.getmtime(os.path.join(d, "config.json")), default=None)


def _read_object(path: str, what: str) -> dict:
    """A JSON object from `path`; ValueError naming the file otherwise."""
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"Cannot read {what} {path!r}: {e}. Expected a JSON object.") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what.capitalize()} {path!r} holds a JSON {type(value).__name__}. Expected a JSON object "
                         "such as {\"finetune\": {\"epochs\": 5}}.")
    return value


def resolve(args) -> tuple[config_lib.Config, str]:
    """The run directory and its config: (run's saved config | preset) -> --config file -> --set -> flags."""
    new_run = args.stage in STARTS_RUN and not args.resume
    run_dir = args.run_dir
    if run_dir is None and not new_run:
        run_dir = newest_run()
        if run_dir is None:
            raise ValueError(f"No run found under {MODELS_DIR}/ for stage {args.stage!r}. Run the baseline "
                             "or the whole pipeline first, or pass --run-dir.")
    saved = os.path.join(run_dir, "config.json") if run_dir else None
    if not new_run and not os.path.isfile(saved):
        raise ValueError(f"{run_dir!r} is not a run directory (it has no config.json). Expected a folder made by "
                         "`python -m ssl_keras.run`; start one with `python -m ssl_keras.run --preset ...`.")
    if saved and os.path.isfile(saved) and not args.preset:
        cfg = config_lib.from_dict(_read_object(saved, "run config"))
    else:
        cfg = presets.preset(args.preset or "default")
    if args.config:
        cfg = config_lib.override(cfg, _read_object(args.config, "config file"))
    for assignment in args.set:
        cfg = config_lib.override(cfg, config_lib.parse_assignment(assignment))
    cfg = config_lib.override(cfg, flag_overrides(args))
    if run_dir is None:
        run_dir = os.path.join(MODELS_DIR, f"{cfg.preset}-{time.strftime('%Y%m%d-%H%M%S')}")
    return cfg, run_dir


def check_writable_dir(path: str, flag: str) -> None:
    """ValueError unless `path` is a folder, or can be made one (its first existing parent is a writable folder)."""
    probe = os.path.abspath(path)
    if os.path.exists(probe) and not os.path.isdir(probe):
        raise ValueError(f"{flag} {path!r} is a file. Expected a folder (or a path where one can be made).")
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise ValueError(f"{flag} {path!r} cannot be made: {probe!r} is a file. Expected a folder path.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path!r} cannot be written: {probe!r} is not writable.")


def check_photos(args) -> None:
    """`predict` has photos and they exist (before TensorFlow loads); other stages have none."""
    if args.stage == "predict":
        if not args.images:
            raise ValueError("`predict` needs at least one photo: python -m ssl_keras.run predict PHOTO.jpg")
        missing = [p for p in args.images if not os.path.isfile(p)]
        if missing:
            raise ValueError(f"No such photo: {', '.join(repr(p) for p in missing)}. Expected the path of a "
                             "JPEG, PNG, GIF or BMP file.")
    elif args.images:
        raise ValueError(f"Unexpected argument(s) {args.images} for stage {args.stage!r}.")


def check_paths(args, cfg, run_dir: str) -> None:
    """Every other path argument, checked before any work starts."""
    check_writable_dir(run_dir, "--run-dir")
    if args.stage in ("all", "export"):
        check_writable_dir(args.export_dir, "--export-dir")
    if cfg.data.data_dir and not os.path.isdir(cfg.data.data_dir):
        raise ValueError(f"Data folder {cfg.data.data_dir!r} does not exist or is not a folder. Expected a folder "
                         "with one sub-folder of photos per class (ImageFolder layout).")
    d = cfg.data
    if d.unlabelled_dirs and not d.data_dir:
        raise ValueError("--unlabelled-dir needs --data-dir, the folder of labelled photos (one sub-folder per "
                         "class).")
    if (d.val_dir or d.test_dir) and not d.unlabelled_dirs:
        raise ValueError("--val-dir and --test-dir go with --unlabelled-dir (your own photos). Received: "
                         f"--val-dir {d.val_dir!r}, --test-dir {d.test_dir!r}, no --unlabelled-dir.")
    for flag, path in (("--val-dir", d.val_dir), ("--test-dir", d.test_dir)):
        if path and not os.path.isdir(path):
            raise ValueError(f"{flag} {path!r} does not exist or is not a folder. Expected a folder with one "
                             "sub-folder of photos per class, the classes of --data-dir.")
    if args.model and not os.path.isfile(args.model):
        raise ValueError(f"Model file {args.model!r} does not exist. Expected a .keras classifier.")


def main(argv=None) -> int:
    started = time.monotonic()  # a --budget counts from here (TensorFlow's import and the photos' listing too)
    args = build_parser().parse_intermixed_args(argv)
    run_dir = args.run_dir
    try:
        check_photos(args)
        cfg, run_dir = resolve(args)
        check_paths(args, cfg, run_dir)
        from ssl_keras import quiet

        quiet.import_tensorflow()
        from ssl_keras import rundir

        if "export" in STAGE_CHOICES[args.stage]:
            from ssl_keras import export

            export.tfjs_script_path()  # fail now, not after an hour of training, when `npm ci` was not run
        if args.stage in STARTS_RUN and not args.resume:
            experiment.check_inputs(cfg)  # folders and --pretext-from, before anything is written
        experiment.prepare(cfg)
        run = rundir.Run(cfg, run_dir, resume=args.resume, verbose=1 if sys.stdout.isatty() else 2,
                             log=lambda *a: print(*a, flush=True), started=started)
        print(f"Run directory: {run_dir}  (preset {cfg.preset}, seed {cfg.seed}, method {','.join(cfg.method)})",
              flush=True)
        if args.stage == "predict":
            return experiment.predict(run, args.images, args.model, args.top_k,
                                      err=lambda m: print(m, file=sys.stderr))
        experiment.run_stages(run, STAGE_CHOICES[args.stage], export_dir=args.export_dir, model_name=args.model_name,
                              model=args.model, top_k=args.top_k)
        return 0
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nInterrupted. Continue with: python -m ssl_keras.run --resume --run-dir {run_dir or '<run dir>'}",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
