"""A run directory: its config, split and data source, the table of its classifiers, and their scores.

A run directory explains itself: `config.json` (the resolved config), `split.json`,
`skipped.json`, one folder a stage (`history.csv`, `curves.png`, `best.keras`,
`final.keras`, `stage.json`, `logs/` for TensorBoard), `wall_time.json`, `report.json`,
`plan.json` (a run under `--budget`: the budget, its probe and each plan) and the plots.
`classifiers(cfg)` is the one table that names every classifier of a run: its directory,
its `report.json` key and its plot label (a method's rows are its module's, through the
table of `ssl_keras.methods`). The stages that fill a run are in `ssl_keras.experiment`;
the scores that choose between its classifiers, in `ssl_keras.classifier_stage`.
"""

from __future__ import annotations

import os
import shutil
import time

from ssl_keras import config as config_lib
from ssl_keras import methods
from ssl_keras.classifier_stage import best_so_far, val_score  # val_score: also the report's and the tables'
from ssl_keras.config_base import Classifier
from ssl_keras.files import read_json, write_json

# Photos a batch when a classifier is only scored (validation, test): fewer, larger calls than the training batch;
# nothing but speed depends on it (a few hundredths of a second a validation at 32 px, BENCHMARKS §6.3 round 12).
EVAL_BATCH = 256


def classifiers(cfg) -> list[Classifier]:
    """Every classifier the config trains, in training order: the one naming table of a run.

    The article's classifiers, then those of each method of `cfg.method`, as its module declares them
    (the table of `ssl_keras.methods`).
    """
    out = [Classifier("baseline", "baseline", "baseline (from scratch)", "pretrain")]
    if cfg.freeze != "all" and cfg.also_frozen:
        out.append(Classifier("finetune_all", "ssl_frozen", "SSL, backbone frozen", "pretrain", "all"))
    fine_tuned = "SSL, backbone frozen" if cfg.freeze == "all" else "SSL, fine-tuned"
    out.append(Classifier(f"finetune_{cfg.freeze}", "ssl", fine_tuned, "pretrain", cfg.freeze))
    for m in methods.METHODS:
        if m.name in cfg.method:
            out += m.classifiers(cfg)
    return out


class Run:
    """One run directory and what its stages share: config, split, data source."""

    def __init__(self, cfg, run_dir: str, *, resume: bool = False, verbose=1, log=print, started: float | None = None):
        self.cfg, self.dir, self.resume, self.verbose, self.log = cfg, run_dir, resume, verbose, log
        # when the command began (time.monotonic): a --budget counts from there, TensorFlow's import included
        self.started = time.monotonic() if started is None else started
        os.makedirs(run_dir, exist_ok=True)
        write_json(self.path("config.json"), config_lib.to_dict(cfg))
        self._source = None
        self._split = None
        self.trained = 0  # training stages that ran in this call (not skipped by --resume)
        self.clock = None  # the `budget.Clock` of the stages running now (`experiment.run_stages`)

    def path(self, *parts) -> str:
        return os.path.join(self.dir, *parts)

    @property
    def source(self):
        from ssl_keras import sources

        if self._source is None:
            self._source = sources.open_source(self.cfg.data)
        return self._source

    @property
    def split(self) -> dict:
        """The run's split, made once (seeded) and then read back from split.json."""
        if self._split is None:
            self._split = read_json(self.path("split.json")) if os.path.exists(self.path("split.json")) \
                else self._make_split()
        return self._split

    def _make_split(self) -> dict:
        from ssl_keras import sources, split as split_lib

        d = self.cfg.data
        self.log(f"Reading {self.source.description} ...")
        records = self.source.records()
        good, bad = sources.scan_images(self.source, [r.key for r in records])
        good = set(good)
        if bad:
            self.log(f"Skipped {len(bad)} unreadable photo(s); listed in {self.path('skipped.json')}")
        write_json(self.path("skipped.json"), {"count": len(bad), "files": bad})
        records = [r for r in records if r.key in good]
        if d.unlabelled_dirs:  # your own photos: the classes are the labelled folder's, and only those
            classes = split_lib.own_classes(records, d.classes)
            hashes = sources.content_hashes(self.source, [r.key for r in records])
            split = split_lib.folder_split(
                records, classes, hashes=hashes, labels_per_class=d.labels_per_class, val_fraction=d.val_fraction,
                test_fraction=d.test_fraction, max_unlabelled=d.max_unlabelled, seed=self.cfg.seed)
            split["non_images"] = self.source.non_images
            if split["pool_duplicates"]:
                self.log(f"Left out of the unlabelled pool: {len(split['pool_duplicates'])} photo(s) with the same "
                         "bytes as a validation or test photo (split.json: pool_duplicates)")
        else:
            classes = split_lib.choose_classes(records, d.classes, d.num_classes)
            split = split_lib.make_split(
                records, classes, labels_per_class=d.labels_per_class, val_per_class=d.val_per_class,
                test_fraction=d.test_fraction, max_test_per_class=d.max_test_per_class,
                max_unlabelled=d.max_unlabelled, seed=self.cfg.seed)
        split["source"] = self.source.description
        split["skipped"] = len(bad)
        write_json(self.path("split.json"), split)
        self.log(f"Split: {len(split['labelled'])} labelled, {len(split['val'])} validation, "
                 f"{len(split['test'])} test, {len(split['unlabelled'])} + {len(split['unlabelled_val'])} "
                 f"unlabelled (train + val) photos; classes: {', '.join(classes)}")
        return split

    @property
    def classifiers(self) -> list[Classifier]:
        """The run's classifiers, in training order (`classifiers(cfg)`)."""
        return classifiers(self.cfg)

    @property
    def classes(self) -> list[str]:
        return self.split["classes"]

    @property
    def pool(self) -> list[str]:
        """Every unlabelled photo (the rotation task's train and validation parts); never val or test."""
        return self.split["unlabelled"] + self.split["unlabelled_val"]

    def dataset(self, part: str, *, training=False, stage=None, repeat=False):
        """Batches of (pixels, class index) of one labelled part of the split.

        Args:
            part: "labelled" (the labelled training photos), "val" or "test".
            training: shuffle the photos, and augment them as the `StageConfig` `stage` says.
            repeat: endless batches.
        """
        from ssl_keras import data

        if part not in ("labelled", "val", "test"):
            raise ValueError(f"`part` must be one of ('labelled', 'val', 'test'). Received: {part!r}")
        d = self.cfg.data
        batch = d.batch_size if training else max(d.batch_size, EVAL_BATCH)
        return data.labelled_dataset(self.source, self.split[part], d.image_size, batch, training=training,
                                     stage=stage, seed=self.cfg.seed, repeat=repeat)

    def stage_info(self, name: str) -> dict:
        p = self.path(name, "stage.json")
        return read_json(p) if os.path.exists(p) else {}

    def stage_done(self, name: str) -> dict | None:
        return (self.stage_info(name) or None) if self.resume else None

    def finish_stage(self, name: str, start: float, **extra) -> dict:
        info = {"wall_time_s": round(time.time() - start, 1), **extra}
        write_json(self.path(name, "stage.json"), info)
        self.trained += 1
        return info

    def test_accuracy(self, name: str) -> float | None:
        p = self.path(name, "test_metrics.json")
        return read_json(p)["accuracy"] if os.path.exists(p) else None


def entry(cfg, name: str) -> Classifier:
    """The row of `classifiers(cfg)` whose directory is `name`."""
    return next(c for c in classifiers(cfg) if c.dir == name)


def best_classifier(run: Run) -> Classifier | None:
    """The classifier a run ships (`best_so_far` over all of them), None before any is trained."""
    best = best_so_far(run, before=None)
    return entry(run.cfg, best) if best else None


def model_path(run: Run, model_arg: str | None = None) -> str:
    """`model_arg`, else the `.keras` file of the run's best classifier by validation accuracy."""
    if model_arg:
        if not os.path.isfile(model_arg):
            raise ValueError(f"Model file {model_arg!r} does not exist. Expected a .keras classifier.")
        return model_arg
    best = best_classifier(run)
    if best is None:
        raise ValueError(f"No trained classifier in {run.dir!r}. Run the pipeline first or pass --model.")
    return run.path(best.dir, "best.keras")


def copy_stage(source_dir: str, run: Run, stage: str) -> None:
    """Starts `run` from the finished `stage` of the run in `source_dir` (its models, history and stage.json).

    The copied stage.json keeps the time the stage took there. Raises ValueError when it is not finished.
    """
    src = os.path.join(source_dir, stage)
    if not os.path.isfile(os.path.join(src, "stage.json")) or not os.path.isfile(os.path.join(src, "best.keras")):
        raise ValueError(f"No finished {stage!r} stage in {source_dir!r} to start from. Expected "
                         f"{src}/stage.json and best.keras.")
    if os.path.exists(run.path(stage, "stage.json")):
        return
    tmp = run.path(f".{stage}.copy")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("backup", "logs"))
    shutil.rmtree(run.path(stage), ignore_errors=True)
    os.rename(tmp, run.path(stage))
