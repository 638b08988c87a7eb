"""A run directory: its config, split and data source, the table of its classifiers, and their scores.

A run directory explains itself: `config.json` (the resolved config), `split.json`,
`skipped.json`, one folder a stage (`history.csv`, `curves.png`, `best.keras`,
`final.keras`, `stage.json`, `logs/` for TensorBoard), `wall_time.json`, `report.json`,
`plan.json` (a run under `--budget`: the budget, its probe and each plan) and the plots.
`classifiers(cfg)` is the one table that names every classifier of a run: its directory,
its `report.json` key and its plot label. The stages that fill a run are
in `ssl_keras.experiment`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass

from ssl_keras import config as config_lib


@dataclass(frozen=True)
class Classifier:
    """One breed classifier of a run."""

    dir: str  # its stage directory inside the run directory
    key: str  # its key in report.json
    label: str  # its label in plots and tables
    method: str  # the `method` that trains it ("pretrain": the article's pipeline)
    freeze: str | None = None  # the article's fine-tuned classifiers: the backbone blocks frozen


def classifiers(cfg) -> list[Classifier]:
    """Every classifier the config trains, in training order: the one naming table of a run."""
    out = [Classifier("baseline", "baseline", "baseline (from scratch)", "pretrain")]
    if cfg.freeze != "all" and cfg.also_frozen:
        out.append(Classifier("finetune_all", "ssl_frozen", "SSL, backbone frozen", "pretrain", "all"))
    fine_tuned = "SSL, backbone frozen" if cfg.freeze == "all" else "SSL, fine-tuned"
    out.append(Classifier(f"finetune_{cfg.freeze}", "ssl", fine_tuned, "pretrain", cfg.freeze))
    if "rotation_aux" in cfg.method:
        for start in cfg.rotation_aux.starts:
            name = "rotation_aux" if start == "pretext" else "rotation_aux_scratch"
            out.append(Classifier(name, name, f"rotation loss, from {start}", "rotation_aux"))
    if "self_training" in cfg.method:
        out.append(Classifier("self_training", "self_training", "self-training", "self_training"))
    if "fixmatch" in cfg.method:
        out.append(Classifier("fixmatch", "fixmatch", "FixMatch", "fixmatch"))
    return out


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
    """One run directory and what its stages share: config, split, data source."""

    def __init__(self, cfg, run_dir: str, *, resume: bool = False, verbose=1, log=print):
        self.cfg, self.dir, self.resume, self.verbose, self.log = cfg, run_dir, resume, verbose, log
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
            self._source = sources.open_source(self.cfg.data.data_dir, self.cfg.data.tfds_name)
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
    def classes(self) -> list[str]:
        return self.split["classes"]

    @property
    def pool(self) -> list[str]:
        """Every unlabelled photo (the rotation task's train and validation parts); never val or test."""
        return self.split["unlabelled"] + self.split["unlabelled_val"]

    def labelled(self, part: str, *, training=False, stage=None, repeat=False):
        from ssl_keras import data

        d = self.cfg.data
        return data.labelled_dataset(self.source, self.split[part], d.image_size, d.batch_size, training=training,
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


def val_score(info: dict) -> float:
    """What picks between classifiers: the mean validation accuracy of a stage's last epochs.

    The best epoch's accuracy is the largest of many noisy values on a few hundred photos,
    and the more epochs a stage has, the more it overstates the model; the last epochs'
    mean, after the cosine schedule has settled, does not.
    """
    return info.get("val_accuracy_last", info.get("best_val_accuracy", 0.0))


def trained_before(run: Run, before: str | None = None, extra=()) -> list[str]:
    """Stage directories of the trained classifiers listed before `before` in `classifiers(cfg)`, and `extra`."""
    names = []
    for entry in classifiers(run.cfg):
        if entry.dir == before:
            break
        names.append(entry.dir)
    return [n for n in [*names, *extra] if run.stage_info(n) and os.path.exists(run.path(n, "best.keras"))]


def best_so_far(run: Run, before: str | None = None, extra=()) -> str | None:
    """The trained classifier (of `trained_before`) with the highest `val_score`; ties go to the earlier one."""
    scored = [(val_score(run.stage_info(n)), -i, n) for i, n in enumerate(trained_before(run, before, extra))]
    return max(scored)[2] if scored else None


def best_classifier(run: Run) -> Classifier | None:
    """The classifier with the highest validation accuracy (ties: the earlier one), None before any is trained."""
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
