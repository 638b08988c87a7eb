"""`python -m ssl_keras.run [STAGE] [options]`: the whole experiment, or one stage of it.

The only module that reads `sys.argv`, the environment and the seed. With no
stage it runs baseline -> pretext -> finetune -> evaluate -> report -> export
into one run directory (default `models/<preset>-<time>`), which then explains
itself: config.json, split.json, skipped.json, one folder a stage with
history.csv, best.keras, final.keras and plots, report.json and the plots.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

from ssl_keras import config as config_lib

STAGES = ("all", "baseline", "pretext", "finetune", "evaluate", "report", "predict", "export")
MODELS_DIR = "models"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ssl_keras.run",
        description="Rotation self-supervision on dog photos: a few labels, many unlabelled photos.",
        epilog="Stages: all (default: baseline, pretext, finetune, evaluate, report, export), baseline, "
               "pretext, finetune, evaluate, report, predict IMAGE..., export.",
    )
    p.add_argument("stage", nargs="?", default="all", choices=STAGES, help="what to run (default: all)")
    p.add_argument("images", nargs="*", help="photos for `predict`")
    p.add_argument("--preset", choices=sorted(config_lib.PRESETS), help="named config (default: default)")
    p.add_argument("--config", metavar="FILE", help="JSON file of config overrides, applied after the preset")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="any config value, e.g. --set finetune.learning_rate=3e-4 (repeatable)")
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", help="ImageFolder directory (one sub-folder per class); default: TFDS stanford_dogs")
    g.add_argument("--tfds-name", help="TFDS data set when no --data-dir is given")
    g.add_argument("--classes", help="comma-separated class folder names to label")
    g.add_argument("--num-classes", type=int, help="label the N classes with the most photos (default 10)")
    g.add_argument("--labels-per-class", type=int, help="labelled training photos per class (default 57)")
    g.add_argument("--max-unlabelled", type=int, help="cap on the unlabelled pool (0: all)")
    g.add_argument("--image-size", type=int, help="square input size in pixels")
    g.add_argument("--batch-size", type=int)
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, help="epochs of the labelled stages (baseline, finetune)")
    g.add_argument("--pretext-epochs", type=int, help="epochs of the rotation task")
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
    g.add_argument("--model", help="a .keras classifier for predict/export (default: the run's fine-tuned best)")
    g.add_argument("--export-dir", default="export", help="where `export` writes (default: export/)")
    g.add_argument("--model-name", default="dog_breeds", help="name of the exported model (default: dog_breeds)")
    g.add_argument("--top-k", type=int, help="breeds listed per prediction (default 5)")
    return p


def flag_overrides(args) -> dict:
    """The config values the command-line flags set (unset flags set nothing)."""
    data, out = {}, {}
    for key in ("data_dir", "tfds_name", "num_classes", "labels_per_class", "max_unlabelled", "image_size",
                "batch_size"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    if args.classes:
        data["classes"] = [c.strip() for c in args.classes.split(",") if c.strip()]
    if data:
        out["data"] = data
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
    return out


def newest_run(models_dir: str = MODELS_DIR) -> str | None:
    """The most recently changed run directory (one with a config.json) under `models_dir`."""
    if not os.path.isdir(models_dir):
        return None
    runs = [os.path.join(models_dir, d) for d in os.listdir(models_dir)
            if os.path.exists(os.path.join(models_dir, d, "config.json"))]
    return max(runs, key=lambda d: os.path.getmtime(os.path.join(d, "config.json")), default=None)


def resolve(args) -> tuple[config_lib.Config, str]:
    """The run directory and its config: (run's saved config | preset) -> --config file -> --set -> flags."""
    starts_run = args.stage in ("all", "baseline", "pretext") and not args.resume
    run_dir = args.run_dir
    if run_dir is None and not starts_run:
        run_dir = newest_run()
        if run_dir is None:
            raise ValueError(f"No run found under {MODELS_DIR}/ for stage {args.stage!r}. Run the baseline "
                             "or the whole pipeline first, or pass --run-dir.")
    saved = os.path.join(run_dir, "config.json") if run_dir else None
    if saved and os.path.exists(saved) and not args.preset:
        with open(saved) as f:
            cfg = config_lib.from_dict(json.load(f))
    else:
        cfg = config_lib.preset(args.preset or "default")
    if args.config:
        try:
            with open(args.config) as f:
                cfg = config_lib.override(cfg, json.load(f))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"Cannot read config file {args.config!r}: {e}. Expected a JSON object.") from e
    for assignment in args.set:
        cfg = config_lib.override(cfg, config_lib.parse_assignment(assignment))
    cfg = config_lib.override(cfg, flag_overrides(args))
    if run_dir is None:
        run_dir = os.path.join(MODELS_DIR, f"{cfg.preset}-{time.strftime('%Y%m%d-%H%M%S')}")
    return cfg, run_dir


def write_json(path: str, obj) -> None:
    """Writes JSON next to `path`, then renames it into place."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


class Run:
    """One run directory and everything the stages share: config, split, data source."""

    def __init__(self, cfg, run_dir, resume=False, verbose=1):
        self.cfg, self.dir, self.resume, self.verbose = cfg, run_dir, resume, verbose
        os.makedirs(run_dir, exist_ok=True)
        write_json(self.path("config.json"), config_lib.to_dict(cfg))
        self._source = None
        self._split = None
        self.trained = 0  # training stages that ran in this call (not skipped by --resume)

    def path(self, *parts) -> str:
        return os.path.join(self.dir, *parts)

    @property
    def source(self):
        from ssl_keras import data

        if self._source is None:
            self._source = data.open_source(self.cfg.data.data_dir, self.cfg.data.tfds_name)
        return self._source

    @property
    def split(self) -> dict:
        """The run's split, made once (seeded) and then read back from split.json."""
        if self._split is None:
            if os.path.exists(self.path("split.json")):
                self._split = read_json(self.path("split.json"))
            else:
                self._split = self._make_split()
        return self._split

    def _make_split(self) -> dict:
        from ssl_keras import data

        d = self.cfg.data
        print(f"Reading {self.source.description} ...", flush=True)
        records = self.source.records()
        good, bad = data.scan_images(self.source, [r.key for r in records])
        good = set(good)
        if bad:
            print(f"Skipped {len(bad)} unreadable photo(s); listed in {self.path('skipped.json')}", flush=True)
        write_json(self.path("skipped.json"), {"count": len(bad), "files": bad})
        records = [r for r in records if r.key in good]
        classes = data.choose_classes(records, d.classes, d.num_classes)
        split = data.make_split(
            records, classes, labels_per_class=d.labels_per_class, val_per_class=d.val_per_class,
            test_fraction=d.test_fraction, max_test_per_class=d.max_test_per_class,
            max_unlabelled=d.max_unlabelled, seed=self.cfg.seed)
        split["source"] = self.source.description
        split["skipped"] = len(bad)
        write_json(self.path("split.json"), split)
        print(f"Split: {len(split['labelled'])} labelled, {len(split['val'])} validation, "
              f"{len(split['test'])} test, {len(split['unlabelled'])} + {len(split['unlabelled_val'])} "
              f"unlabelled (train + val) photos; classes: {', '.join(classes)}", flush=True)
        return split

    @property
    def classes(self) -> list[str]:
        return self.split["classes"]

    def labelled(self, part: str, training=False, stage=None):
        from ssl_keras import data

        d = self.cfg.data
        return data.labelled_dataset(self.source, self.split[part], d.image_size, d.batch_size,
                                     training=training, stage=stage, seed=self.cfg.seed)

    def stage_done(self, name) -> dict | None:
        p = self.path(name, "stage.json")
        return read_json(p) if (self.resume and os.path.exists(p)) else None

    def finish_stage(self, name, start, **extra) -> dict:
        info = {"wall_time_s": round(time.time() - start, 1), **extra}
        write_json(self.path(name, "stage.json"), info)
        self.trained += 1
        return info


def stage_baseline(run: Run) -> dict:
    """A classifier trained from scratch on the labelled photos."""
    return _train_classifier(run, "baseline", pretext_model=None, freeze="none")


def _train_classifier(run: Run, name: str, pretext_model, freeze: str) -> dict:
    """Trains one breed classifier into `run/name`: from scratch when `pretext_model` is None, else on
    its backbone (weights copied, blocks frozen by `freeze`) with a fresh dense head."""
    from ssl_keras import distribute, models, plots, train, transfer

    if (done := run.stage_done(name)) is not None:
        print(f"[{name}] already finished; skipping (--resume).")
        return done
    cfg, start = run.cfg, time.time()
    strategy = distribute.strategy_for(cfg.strategy)  # the one main() made (strategy_for keeps it)
    stage = cfg.baseline if name == "baseline" else cfg.finetune
    with strategy.scope():  # build, compile and fit under the strategy
        model = models.build_classifier(cfg.model, cfg.data.image_size, len(run.classes),
                                        frozen_backbone=(freeze == "all"))
        copied = 0
        if pretext_model is not None:
            # the fully frozen comparison always takes the whole backbone
            copied = transfer.copy_backbone(pretext_model, model, 0 if freeze == "all" else cfg.transfer_blocks)
            transfer.set_frozen(model, freeze)
        params = transfer.count_params(model)
        print(f"\n[{name}] {len(run.split['labelled'])} labelled photos; backbone weights copied: {copied}; "
              f"freeze={freeze}; trainable params {params['trainable']:,}, frozen {params['non_trainable']:,}",
              flush=True)
        steps = math.ceil(len(run.split["labelled"]) / cfg.data.batch_size)
        hist = train.fit(model, run.labelled("labelled", training=True, stage=stage), run.labelled("val"), stage,
                         run.path(name), steps_per_epoch=steps, resume=run.resume, verbose=run.verbose)
    plots.history(hist, name, run.path(name, "curves.png"))
    return run.finish_stage(name, start, epochs=len(hist.get("loss", [])),
                            best_val_accuracy=max(hist.get("val_accuracy", [0.0])), weights_copied=copied,
                            freeze=freeze, **params)


def stage_pretext(run: Run) -> dict:
    """The same backbone with a 4-way head, trained to predict the rotation of unlabelled photos."""
    from ssl_keras import data, distribute, models, plots, rotations, train

    if (done := run.stage_done("pretext")) is not None:
        print("[pretext] already finished; skipping (--resume).")
        return done
    cfg, start = run.cfg, time.time()
    strategy = distribute.strategy_for(cfg.strategy)  # the one main() made (strategy_for keeps it)
    d = cfg.data
    keys, val_keys = run.split["unlabelled"], run.split["unlabelled_val"]
    # Under mirrored / multi-worker the strategy places the batches on its devices itself.
    train_ds = data.pretext_dataset(run.source, keys, d.image_size, d.batch_size, training=True, stage=cfg.pretext,
                                    seed=cfg.seed, device=_accelerator() if cfg.strategy == "default" else None)
    val_ds = data.pretext_dataset(run.source, val_keys, d.image_size, d.batch_size)
    os.makedirs(run.path("pretext"), exist_ok=True)
    example, labels = next(iter(val_ds))
    b = example.shape[0] // 4
    plots.rotations(example.numpy()[::b][:4], labels.numpy()[::b][:4], rotations.ANGLES,
                    run.path("pretext", "rotations.png"))
    print(f"\n[pretext] {len(keys)} unlabelled photos -> {4 * len(keys)} rotated samples an epoch; "
          f"{4 * len(val_keys)} for validation", flush=True)
    with strategy.scope():  # build, compile and fit under the strategy
        model = models.build_rotation_model(cfg.model, d.image_size)
        hist = train.fit(model, train_ds, val_ds, cfg.pretext, run.path("pretext"),
                         steps_per_epoch=math.ceil(len(keys) / d.batch_size), resume=run.resume, verbose=run.verbose)
    plots.history(hist, "pretext (rotation)", run.path("pretext", "curves.png"))
    return run.finish_stage("pretext", start, epochs=len(hist.get("loss", [])),
                            best_val_accuracy=max(hist.get("val_accuracy", [0.0])),
                            samples_per_epoch=4 * len(keys))


def finetune_dirs(cfg) -> list[tuple[str, str]]:
    """(stage directory, freeze) of each fine-tuned classifier this config trains, in training order."""
    out = [(f"finetune_{cfg.freeze}", cfg.freeze)]
    if cfg.also_frozen and cfg.freeze != "all":
        out.insert(0, ("finetune_all", "all"))
    return out


def stage_finetune(run: Run) -> dict:
    """Fresh breed classifiers on the pretext backbone: fully frozen (for comparison) and as configured."""
    import keras

    path = run.path("pretext", "best.keras")
    if not os.path.exists(path):
        raise ValueError(f"No pretext model at {path!r}. Run the `pretext` stage first.")
    pretext = keras.models.load_model(path)
    return {name: _train_classifier(run, name, pretext, freeze) for name, freeze in finetune_dirs(run.cfg)}


def stage_evaluate(run: Run) -> dict:
    """Test metrics of every classifier in the run, from its best checkpoint."""
    import keras

    from ssl_keras import evaluate, plots

    test = run.labelled("test")
    out = {}
    for name in ["baseline"] + [n for n, _ in finetune_dirs(run.cfg)]:
        path = run.path(name, "best.keras")
        if not os.path.exists(path):
            continue
        probs, labels = evaluate.predict_dataset(keras.models.load_model(path), test)
        m = evaluate.metrics(probs, labels, run.classes)
        write_json(run.path(name, "test_metrics.json"), m)
        plots.confusion(m["confusion"], run.classes, run.path(name, "confusion.png"), f"{name}: confusion (test)")
        print(f"[evaluate] {name}: test accuracy {m['accuracy']:.3f} on {m['n']} photos")
        out[name] = m
    if not out:
        raise ValueError(f"No trained classifier in {run.dir!r}. Run `baseline` or `finetune` first.")
    return out


def stage_report(run: Run, wall: dict) -> dict:
    """report.json, the comparison and example plots, and a summary table."""
    from ssl_keras import evaluate, plots

    cfg, split = run.cfg, run.split
    ssl_name, frozen_name = f"finetune_{cfg.freeze}", "finetune_all"

    def test_acc(name):
        p = run.path(name, "test_metrics.json")
        return read_json(p)["accuracy"] if os.path.exists(p) else None

    def stage_info(name):
        p = run.path(name, "stage.json")
        return read_json(p) if os.path.exists(p) else {}

    report = {
        "preset": cfg.preset, "seed": cfg.seed, "classes": run.classes, "source": split.get("source"),
        "counts": {"labelled": len(split["labelled"]), "val": len(split["val"]), "test": len(split["test"]),
                   "unlabelled": len(split["unlabelled"]), "unlabelled_val": len(split["unlabelled_val"]),
                   "skipped": split.get("skipped", 0)},
        "baseline": {"test_accuracy": test_acc("baseline"), **stage_info("baseline")},
        "pretext": {"val_accuracy": stage_info("pretext").get("best_val_accuracy"), **stage_info("pretext")},
        "ssl": {"test_accuracy": test_acc(ssl_name), "freeze": cfg.freeze, **stage_info(ssl_name)},
        "ssl_frozen": {"test_accuracy": test_acc(frozen_name), **stage_info(frozen_name)},
        "wall_time_s": wall,
    }
    write_json(run.path("report.json"), report)
    bars = {label: report[key]["test_accuracy"] for label, key in
            (("baseline", "baseline"), ("SSL frozen", "ssl_frozen"), (f"SSL freeze={cfg.freeze}", "ssl"))
            if report[key]["test_accuracy"] is not None and not (key == "ssl_frozen" and cfg.freeze == "all")}
    if bars:
        counts = report["counts"]
        plots.comparison(bars, run.path("comparison.png"),
                         f"Test accuracy, {counts['labelled']} labels ({counts['test']} test photos)")
    best = ssl_name if report["ssl"]["test_accuracy"] is not None else "baseline"
    if os.path.exists(run.path(best, "best.keras")):
        import keras

        key, label = split["test"][0]
        image = _read_image(run.source, key)
        probs = _predict(keras.models.load_model(run.path(best, "best.keras")), image)
        plots.prediction(image, evaluate.top_k(probs, run.classes, cfg.top_k), run.path("prediction.png"),
                         f"{os.path.basename(key)}\ntrue: {run.classes[label]}")
    rows = [("stage", "epochs", "best val acc", "test acc", "wall s")]
    for name in ("baseline", "pretext", frozen_name, ssl_name):
        info = stage_info(name)
        if info:
            t = test_acc(name)
            rows.append((name, str(info.get("epochs")), f"{info.get('best_val_accuracy', 0):.3f}",
                         "-" if t is None else f"{t:.3f}", f"{info.get('wall_time_s', 0):.0f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    print("\n" + "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows))
    print(f"\nRun directory: {run.dir}  (report.json, comparison.png, */curves.png)")
    return report


def _trained_seconds(run: Run, stage: str) -> float:
    """The training time the stage.json files of `stage` record (finetune: each classifier it trains)."""
    names = [name for name, _ in finetune_dirs(run.cfg)] if stage == "finetune" else [stage]
    paths = [run.path(n, "stage.json") for n in names]
    return round(sum(read_json(p)["wall_time_s"] for p in paths if os.path.exists(p)), 1)


def _read_image(source, key):
    """A photo of the run's source as a uint8 (H, W, 3) array."""
    import tensorflow as tf

    ds = source.dataset([key], [0])
    encoded, _ = next(iter(ds))
    return tf.io.decode_image(encoded, channels=3, expand_animations=False).numpy()


def _predict(model, image):
    import numpy as np

    return np.asarray(model(image[None].astype("float32"), training=False))[0]


def classifier_path(run: Run, model_arg: str | None) -> str:
    if model_arg:
        if not os.path.exists(model_arg):
            raise ValueError(f"Model file {model_arg!r} does not exist. Expected a .keras classifier.")
        return model_arg
    for name in (f"finetune_{run.cfg.freeze}", "baseline"):
        if os.path.exists(run.path(name, "best.keras")):
            return run.path(name, "best.keras")
    raise ValueError(f"No trained classifier in {run.dir!r}. Run the pipeline first or pass --model.")


def stage_predict(run: Run, images, model_arg, top_k) -> int:
    """Prints the top-k breeds of each photo; unreadable photos are reported, not fatal."""
    import keras
    import tensorflow as tf

    from ssl_keras import evaluate

    if not images:
        raise ValueError("`predict` needs at least one photo: python -m ssl_keras.run predict PHOTO.jpg")
    path = classifier_path(run, model_arg)
    model = keras.models.load_model(path)
    print(f"Model: {path}")
    failed = 0
    for image_path in images:
        if not os.path.isfile(image_path):
            print(f"\n{image_path}: no such file. Expected the path of a photo.", file=sys.stderr)
            failed += 1
            continue
        try:
            image = tf.io.decode_image(tf.io.read_file(image_path), channels=3, expand_animations=False).numpy()
        except (tf.errors.OpError, ValueError) as e:
            print(f"\n{image_path}: cannot read it as an image ({type(e).__name__}). "
                  "Expected a JPEG, PNG, GIF or BMP file.", file=sys.stderr)
            failed += 1
            continue
        print(f"\n{image_path}")
        for name, p in evaluate.top_k(_predict(model, image), run.classes, top_k):
            print(f"  {p * 100:6.2f}%  {'#' * round(p * 30):30s} {name}")
    return 1 if failed else 0


def stage_export(run: Run, model_arg, export_dir, model_name, top_k) -> dict:
    """SavedModel (a new version), TF.js float32/float16 and the web page under `export_dir`.

    The TF.js models are measured on the run's test split; the returned dict is
    also written to `export_dir/export.json`.
    """
    import keras

    from ssl_keras import export

    path = classifier_path(run, model_arg)
    print(f"\n[export] {path} -> {export_dir}/")
    return export.export_all(keras.models.load_model(path), run.classes, export_dir, model_name=model_name,
                             top_k=top_k, test_items=run.split["test"], source=run.source)


def _accelerator() -> str | None:
    """"/GPU:0" when TensorFlow sees a GPU (the rotations then run there), else None."""
    import tensorflow as tf

    return "/GPU:0" if tf.config.list_physical_devices("GPU") else None


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg, run_dir = resolve(args)
        if args.stage == "predict" and not args.images:
            raise ValueError("`predict` needs at least one photo: python -m ssl_keras.run predict PHOTO.jpg")
        if args.stage != "predict" and args.images:
            raise ValueError(f"Unexpected argument(s) {args.images} for stage {args.stage!r}.")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras

        from ssl_keras import distribute

        distribute.strategy_for(cfg.strategy)  # multi-worker must exist before any TensorFlow op

        keras.utils.set_random_seed(cfg.seed)
        if cfg.mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16")
        run = Run(cfg, run_dir, resume=args.resume, verbose=1 if sys.stdout.isatty() else 2)
        print(f"Run directory: {run_dir}  (preset {cfg.preset}, seed {cfg.seed})", flush=True)
        top_k = args.top_k or cfg.top_k
        if args.stage == "predict":
            return stage_predict(run, args.images, args.model, top_k)
        if args.stage == "export":
            stage_export(run, args.model, args.export_dir, args.model_name, top_k)
            return 0
        wall = read_json(run.path("wall_time.json")) if os.path.exists(run.path("wall_time.json")) else {}
        todo = {"all": ["baseline", "pretext", "finetune", "evaluate", "report", "export"]}.get(
            args.stage, [args.stage])
        if "export" in todo:
            from ssl_keras import export

            export.tfjs_script_path()  # fail now, not after an hour of training, when `npm ci` was not run
        for stage in todo:
            start, trained = time.time(), run.trained
            if stage == "baseline":
                stage_baseline(run)
            elif stage == "pretext":
                stage_pretext(run)
            elif stage == "finetune":
                stage_finetune(run)
            elif stage == "evaluate":
                stage_evaluate(run)
            elif stage == "report":
                stage_report(run, wall)
            elif stage == "export":
                stage_export(run, args.model, args.export_dir, args.model_name, top_k)
            if stage == "report":
                continue
            if stage in ("baseline", "pretext", "finetune") and run.trained == trained:
                # Skipped by --resume: keep the time it took, or, for a stage trained elsewhere and copied
                # in, read the time its stage.json recorded.
                wall.setdefault(stage, _trained_seconds(run, stage))
            else:
                wall[stage] = round(time.time() - start, 1)
            write_json(run.path("wall_time.json"), wall)
        return 0
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted. Continue with: python -m ssl_keras.run --resume --run-dir "
              f"{run_dir if 'run_dir' in locals() else '<run dir>'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
