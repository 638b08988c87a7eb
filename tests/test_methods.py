"""The semi-supervised methods: rotation loss on both kinds of batch, pseudo-labels from the pool only, the threshold
chosen on validation, FixMatch's masked loss, a student resuming after an interruption, every method end to end
on the tiny preset, and a new method added as one module and one line of the table."""

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from ssl_keras import evaluate, models, presets, rotations, run, train
from ssl_keras.config import ModelConfig
from ssl_keras.methods import fixmatch, rotation_aux, self_training

S = 16
CFG = ModelConfig(filters=(4, 8), dense_units=8, dropout=0.0)


def _pixels(n, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, S, S, 3)).astype("float32")


# --- rotation as an auxiliary loss -----------------------------------------------------------------------------


def test_rotation_batches_hold_the_labelled_and_the_unlabelled_photos():
    x, u, y = _pixels(3), _pixels(5, seed=1), np.array([0, 1, 2])
    labelled = tf.data.Dataset.from_tensors((x, y)).repeat()
    unlabelled = tf.data.Dataset.from_tensors(u).repeat()
    inputs, targets = next(iter(rotation_aux.dataset(labelled, unlabelled)))
    np.testing.assert_array_equal(inputs["labelled"], x)
    np.testing.assert_array_equal(targets["breed"], y)
    both = np.concatenate([x, u])  # (8, S, S, 3): labelled photos first, then the unlabelled ones
    rotated = inputs["rotated"].numpy()
    assert rotated.shape == (4 * 8, S, S, 3)
    for k in range(4):
        np.testing.assert_array_equal(rotated[8 * k:8 * (k + 1)], np.rot90(both, k, axes=(1, 2)))
    assert targets["rotation"].numpy().tolist() == [k for k in range(4) for _ in range(8)]


def test_the_rotation_loss_depends_on_the_unlabelled_batch():
    classifier = models.build_classifier(CFG, S, 3)
    trainer = models.build_trainer(classifier, CFG, S, rotation=True)
    x = _pixels(4)
    loss = keras.losses.SparseCategoricalCrossentropy()

    def rotation_loss(u):
        rotated, k = (t.numpy() for t in rotations.rotate_batch(np.concatenate([x, u])))
        return float(loss(k, trainer({"labelled": x, "rotated": rotated}, training=False)["rotation"]))

    assert rotation_loss(_pixels(4, seed=1)) != pytest.approx(rotation_loss(_pixels(4, seed=2)), abs=1e-6)


def test_trainer_shares_the_classifiers_layers():
    classifier = models.build_classifier(CFG, S, 3)
    trainer = models.build_trainer(classifier, CFG, S, rotation=True, consistency=True)
    assert {"labelled", "rotated", "weak", "strong"} == set(trainer.input)
    assert {"breed", "rotation", "consistency"} == set(trainer.output)
    shared = {id(w) for w in classifier.weights}
    assert shared <= {id(w) for w in trainer.weights}  # training the trainer trains the classifier
    x = _pixels(2)
    np.testing.assert_allclose(trainer({"labelled": x, "rotated": x, "weak": x, "strong": x},
                                       training=False)["breed"], classifier(x, training=False), rtol=1e-6)


# --- FixMatch's loss -------------------------------------------------------------------------------------------


def test_confident_cross_entropy_counts_only_confident_weak_views():
    weak = np.array([[0.97, 0.02, 0.01], [0.5, 0.3, 0.2]], "float32")
    strong = np.array([[0.6, 0.3, 0.1], [0.1, 0.1, 0.8]], "float32")
    y_pred = np.concatenate([weak, strong], axis=1)
    loss = fixmatch.confident_cross_entropy(0.95, 3)
    # photo 0: confident, target class 0 -> -log 0.6; photo 1: below the threshold -> 0
    np.testing.assert_allclose(loss(np.zeros(2), y_pred), [-np.log(0.6), 0.0], rtol=1e-5)
    fraction = fixmatch.confident_fraction(0.95, 3)
    fraction.update_state(np.zeros(2), y_pred)
    assert float(fraction.result()) == pytest.approx(0.5)


def test_softmatch_weighs_the_views_below_the_batchs_mean_confidence_by_a_gaussian():
    weak = np.array([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.4, 0.35, 0.25], [0.2, 0.45, 0.35]], "float32")
    strong = np.array([[0.5, 0.3, 0.2]] * 4, "float32")
    y_pred = np.concatenate([weak, strong], axis=1)
    conf = weak.max(axis=1)  # 0.9, 0.6, 0.4, 0.45: mean 0.5875
    mu, var = conf.mean(), conf.var()
    expected = np.where(conf >= mu, 1.0, np.exp(-((conf - mu) ** 2) / (2 * var / 4)))
    assert expected[0] == expected[1] == 1.0 and 0 < expected[2] < expected[3] < 1
    np.testing.assert_allclose(fixmatch.weights(weak, 0.7, soft=True), expected, rtol=1e-4)
    np.testing.assert_allclose(fixmatch.weights(weak, 0.7), [1, 0, 0, 0])  # the threshold alone
    ce = -np.log(strong[np.arange(4), weak.argmax(axis=1)])
    loss = fixmatch.compile_args(fixmatch.FixMatchConfig(soft=True), 3)["loss"]["consistency"]
    np.testing.assert_allclose(loss(np.zeros(4), y_pred), expected * ce, rtol=1e-4)
    fraction = fixmatch.confident_fraction(0.7, 3, soft=True)
    fraction.update_state(np.zeros(4), y_pred)
    assert float(fraction.result()) == pytest.approx(expected.mean(), rel=1e-4)


def test_distribution_alignment_lifts_the_breeds_the_batch_under_predicts():
    weak = np.array([[0.9, 0.05, 0.05], [0.5, 0.2, 0.3], [0.35, 0.65, 0.0]], "float32")  # the batch leans to breed 0
    strong = np.array([[0.2, 0.3, 0.5]] * 3, "float32")
    y_pred = np.concatenate([weak, strong], axis=1)
    aligned = np.asarray(fixmatch.weak_probabilities(y_pred, 3, align=True))
    expected = weak / weak.mean(axis=0)
    np.testing.assert_allclose(aligned, expected / expected.sum(axis=1, keepdims=True), rtol=1e-4)
    np.testing.assert_allclose(fixmatch.weak_probabilities(y_pred, 3), weak)  # off: the raw probabilities
    # photo 1: 0.5 on breed 0 raw (below 0.6, masked); aligned, 0.63 on breed 2 -> the strong view's -log 0.5
    assert aligned[1].argmax() == 2 and aligned[1].max() > 0.6
    np.testing.assert_allclose(fixmatch.confident_cross_entropy(0.6, 3)(np.zeros(3), y_pred)[1], 0.0)
    np.testing.assert_allclose(fixmatch.confident_cross_entropy(0.6, 3, align=True)(np.zeros(3), y_pred)[1],
                               -np.log(0.5), rtol=1e-5)
    fraction = fixmatch.confident_fraction(0.6, 3, align=True)
    fraction.update_state(np.zeros(3), y_pred)
    assert float(fraction.result()) == pytest.approx(float(np.mean(aligned.max(axis=1) >= 0.6)))


def test_pseudo_labels_carry_no_gradient():
    classifier = models.build_classifier(CFG, S, 3)
    trainer = models.build_trainer(classifier, CFG, S, consistency=True)
    weak, strong = tf.constant(_pixels(4)), tf.constant(_pixels(4, seed=1))
    weights = tf.range(1.0, 4.0)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([weak, strong])
        views = {"labelled": tf.constant(_pixels(1)), "weak": weak, "strong": strong}
        out = trainer(views, training=False)["consistency"]
        weak_half, strong_half = tf.reduce_sum(out[:, :3] * weights), tf.reduce_sum(out[:, 3:] * weights)
    assert tape.gradient(weak_half, weak) is None  # the weak view's prediction is a target
    assert float(tf.reduce_max(tf.abs(tape.gradient(strong_half, strong)))) > 0


def test_the_most_confident_strong_views_alone_give_fixmatchs_loss_and_gradient():
    """`strong_share`: only the k most confident weak views' strong views go through the classifier; while fewer
    than k pass the threshold, the loss and the gradient are those of every strong view (BatchNorm in inference
    mode here, so each photo's prediction is its own)."""
    keras.utils.set_random_seed(0)
    classifier = models.build_classifier(CFG, S, 3)
    u, k = 8, 4
    views = {"labelled": tf.constant(_pixels(2)), "weak": tf.constant(_pixels(u, seed=1)),
             "strong": tf.constant(_pixels(u, seed=2))}
    weak_conf = np.asarray(classifier(views["weak"], training=False)).max(axis=1)
    threshold = float(np.sort(weak_conf)[-2]) - 1e-6  # two of the eight pass: fewer than k
    mc = fixmatch.FixMatchConfig(threshold=threshold, ratio=4, strong_share=k / u)
    assert fixmatch.strong_rows(mc, u) == k and fixmatch.strong_rows(fixmatch.FixMatchConfig(), u) == u
    results = []
    for share in (1.0, k / u):
        trainer, args, rows = fixmatch.build_trainer(classifier, CFG, S, 3, dataclasses.replace(mc, strong_share=share),
                                                     u)
        assert rows == (u if share == 1 else k)
        loss = args["loss"]["consistency"]
        with tf.GradientTape() as tape:
            out = trainer(views, training=False)["consistency"]
            value = tf.reduce_mean(loss(None, out))
        assert out.shape == (rows, 6)
        results.append((float(value), tape.gradient(value, classifier.trainable_weights)))
    (full, full_grads), (kept, kept_grads) = results
    assert full > 0 and kept == pytest.approx(full, rel=1e-5)
    for a, b in zip(full_grads, kept_grads):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-7)
    fraction = fixmatch.confident_fraction(threshold, 3, kept=k / u)
    fraction.update_state(None, trainer(views, training=False)["consistency"])
    assert float(fraction.result()) == pytest.approx(2 / u)  # of the whole batch, not of the k


@pytest.mark.parametrize("changes, match", [({"strong_share": 0.0}, "strong_share"),
                                             ({"strong_share": 1.5}, "strong_share"),
                                             ({"strong_share": 0.5, "align": True}, "one or the other"),
                                             ({"strong_share": 0.5, "soft": True}, "must be 1")])
def test_fixmatch_config_refuses_a_bad_strong_share(changes, match):
    with pytest.raises(ValueError, match=match):
        fixmatch.FixMatchConfig(**changes)


# --- pseudo-labels: the threshold and the choice ------------------------------------------------------------------


def test_threshold_for_precision_is_the_lowest_confidence_that_keeps_the_precision():
    # confidences 0.9 .. 0.1; right, right, wrong, right, wrong, wrong, ...
    conf = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    probs = np.stack([conf, 1 - conf], 1)  # the top class is 0 for all
    labels = np.array([0, 0, 1, 0, 1, 1])
    # precision at or above each confidence: 1, 1, 2/3, 3/4, 3/5, 1/2
    assert self_training.threshold_for_precision(probs, labels, 0.74, min_count=1) == pytest.approx(0.6)
    assert self_training.threshold_for_precision(probs, labels, 0.6, min_count=1) == pytest.approx(0.5)
    assert self_training.threshold_for_precision(probs, labels, 0.99, min_count=1) == pytest.approx(0.8)
    assert self_training.threshold_for_precision(probs, labels, 0.99, min_count=3) == 1.0  # never 3 at 99 %


def test_select_thresholds_caps_and_balances_per_class():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.4, 0.6], [0.1, 0.9], [0.55, 0.45]])
    assert self_training.select(probs, 0.0, balance=False).tolist() == [0, 1, 2, 5, 4, 3]
    assert self_training.select(probs, 0.75, balance=False).tolist() == [0, 1, 4]
    assert self_training.select(probs, 0.0, balance=True).tolist() == [0, 1, 4, 3]  # 2 a class: the fewest
    assert self_training.select(probs, 0.0, per_class=1, balance=False).tolist() == [0, 4]


# --- every method end to end on the tiny preset --------------------------------------------------------------

ALL = ["--preset", "tiny", "--method", "all", "--set", "self_training.min_precision=0.3"]


@pytest.fixture(scope="module")
def tiny_all(dogs_dir, tmp_path_factory):
    """The tiny preset with every method, all stages but export; (run dir, stdout)."""
    run_dir = tmp_path_factory.mktemp("methods") / "run"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        for stage in ("baseline", "pretext", "finetune", "methods", "evaluate", "report"):
            argv = [stage, "--run-dir", str(run_dir)] + (ALL + ["--data-dir", dogs_dir] if stage == "baseline" else [])
            assert run.main(argv) == 0, err.getvalue()
    return run_dir, out.getvalue()


METHOD_DIRS = ("rotation_aux_scratch", "rotation_aux", "self_training", "fixmatch")


@pytest.mark.slow
def test_each_method_runs_end_to_end_and_has_a_report_row(tiny_all):
    run_dir, out = tiny_all
    report = json.loads((run_dir / "report.json").read_text())
    assert report["method"] == ["pretrain", "rotation_aux", "self_training", "fixmatch"]
    for key in ("baseline", "ssl", "ssl_frozen", *METHOD_DIRS):
        assert 0.0 <= report[key]["test_accuracy"] <= 1.0, key
        assert report[key]["val_accuracy"] == report[key]["best_val_accuracy"]
    for name in METHOD_DIRS:
        for f in ("best.keras", "final.keras", "history.csv", "curves.png", "stage.json", "test_metrics.json"):
            assert (run_dir / name / f).is_file(), f"{name}/{f}"
        assert len(train.read_history(str(run_dir / name / "history.csv"))["loss"]) == 2
    hist = train.read_history(str(run_dir / "rotation_aux" / "history.csv"))
    assert {"breed_loss", "rotation_loss", "rotation_accuracy", "val_accuracy"} <= set(hist)
    assert "consistency_confident" in train.read_history(str(run_dir / "fixmatch" / "history.csv"))
    # `best` is the latest classifier (in training order) whose 95 % Wilson interval on the validation photos
    # overlaps that of the highest validation score (the mean of its last epochs' validation accuracy), with its
    # test accuracy and model file.
    order = ("baseline", "ssl_frozen", "ssl", "rotation_aux_scratch", "rotation_aux", "self_training", "fixmatch")
    vals = {k: report[k]["val_accuracy_last"] for k in order}
    n = report["counts"]["val"]
    interval = {k: evaluate.wilson_interval(round(v * n), n) for k, v in vals.items()}
    top = max(order, key=lambda k: (vals[k], -order.index(k)))
    best = report["best"]
    assert report["best"]["top_val_key"] == top
    assert best["key"] == [k for k in order if interval[k][1] >= interval[top][0]][-1]
    assert vals[best["key"]] == best["val_accuracy_last"]
    assert best["test_accuracy"] == report[best["key"]]["test_accuracy"]
    assert best["path"].endswith(os.path.join(best["dir"], "best.keras")) and os.path.isfile(best["path"])
    assert "Shipped (picked by validation, mean of its last 5 epochs):" in out and "vs baseline" in out


@pytest.mark.slow
def test_pseudo_labels_come_from_the_unlabelled_pool_only(tiny_all):
    run_dir = tiny_all[0]
    split = json.loads((run_dir / "split.json").read_text())
    chosen = json.loads((run_dir / "self_training" / "round1" / "pseudo_labels.json").read_text())
    assert chosen["keys"], "no pseudo-labels to check"
    pool = set(split["unlabelled"]) | set(split["unlabelled_val"])
    assert set(chosen["keys"]) <= pool
    for part in ("labelled", "val", "test"):
        assert not set(chosen["keys"]) & {k for k, _ in split[part]}, part
    report = chosen["report"]
    assert report["pseudo_labelled"] == len(chosen["keys"]) == len(chosen["targets"])
    classes = split["classes"]
    other = sum(k.split("/")[0] not in classes for k in chosen["keys"])
    assert report["other_breeds"] == other
    assert np.allclose(np.sum(chosen["targets"], axis=1), 1.0, atol=1e-4)  # soft targets: the teacher's probabilities


@pytest.mark.slow
def test_the_threshold_is_chosen_on_the_validation_photos(tiny_all, dogs_dir):
    run_dir = tiny_all[0]
    split = json.loads((run_dir / "split.json").read_text())
    chosen = json.loads((run_dir / "self_training" / "round1" / "pseudo_labels.json").read_text())
    stage = json.loads((run_dir / "self_training" / "stage.json").read_text())
    (member,) = stage["rounds"][0]["teacher"]  # teacher=best: one classifier
    teacher = keras.models.load_model(str(run_dir / member / "best.keras"))
    from ssl_keras import data, sources

    val = data.labelled_dataset(sources.ImageFolder(dogs_dir), split["val"], presets.tiny().data.image_size, 16)
    probs = self_training.predict_flip_mean(teacher, val)
    expected = self_training.threshold_for_precision(probs, [y for _, y in split["val"]], 0.3)
    assert chosen["report"]["threshold"] == pytest.approx(expected)
    assert chosen["report"]["min_precision"] == 0.3


@pytest.mark.slow
def test_an_interrupted_student_resumes(tiny_all, tmp_path, monkeypatch):
    import shutil

    src = tiny_all[0]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("config.json", "split.json", "skipped.json"):
        shutil.copy(src / name, run_dir / name)
    for name in ("baseline", "pretext", "finetune_all", "finetune_1"):
        shutil.copytree(src / name, run_dir / name)
    with open(run_dir / "config.json") as f:
        cfg = json.load(f)
    cfg["method"] = ["pretrain", "self_training"]
    cfg["self_training"]["train"]["epochs"] = 3
    (run_dir / "config.json").write_text(json.dumps(cfg))

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt

    fit = keras.Model.fit
    monkeypatch.setattr(keras.Model, "fit", lambda self, *a, callbacks=(), **k:
                        fit(self, *a, callbacks=[*callbacks, Interrupt()], **k))
    monkeypatch.setattr(train, "COMMIT_SECONDS", 0.0)  # the resume state after every epoch
    assert run.main(["methods", "--run-dir", str(run_dir), "--resume"]) == 130
    round_dir = run_dir / "self_training" / "round1"
    assert train.read_history(str(round_dir / "history.csv"))["epoch"] == [0.0, 1.0]
    labels = (round_dir / "pseudo_labels.json").read_text()
    monkeypatch.setattr(keras.Model, "fit", fit)
    assert run.main(["methods", "--run-dir", str(run_dir), "--resume"]) == 0
    assert train.read_history(str(round_dir / "history.csv"))["epoch"] == [0.0, 1.0, 2.0]
    assert (round_dir / "pseudo_labels.json").read_text() == labels  # the same pseudo-labels, not new ones
    assert json.loads((run_dir / "self_training" / "stage.json").read_text())["epochs"] == 3


def test_mixup_blends_photos_and_targets_with_the_same_weight():
    x = np.stack([np.full((S, S, 3), v, "float32") for v in (0.0, 100.0, 200.0, 250.0)])
    p = np.eye(4, dtype="float32")
    g = tf.random.Generator.from_seed(0)
    ds = tf.data.Dataset.from_tensors((x, p)).map(lambda a, b: self_training.mixup(a, b, 1.0, g))  # as in training
    mixed_x, mixed_p = next(iter(ds.as_numpy_iterator()))
    assert np.allclose(mixed_p.sum(1), 1.0)
    lam = mixed_p.max(1)
    assert (lam >= 0.5 - 1e-6).all() and (mixed_p.argmax(1) == np.arange(4)).all()  # mostly the photo itself
    # every pixel of a mixed photo is the same blend of the two photos as its target
    blended = mixed_p @ np.array([0.0, 100.0, 200.0, 250.0], "float32")
    np.testing.assert_allclose(mixed_x[:, 0, 0, 0], blended, rtol=1e-5, atol=1e-3)


def test_batchnorm_statistics_dragged_by_strong_views_are_re_estimated_on_photos():
    """Strongly augmented batches move BatchNorm's moving averages away from what photos give; before each
    validation FixMatch re-estimates them on photos, so that only the photos' statistics remain."""
    photos = tf.data.Dataset.from_tensors(tf.constant(_pixels(8))).repeat()
    stats = []
    for strong_value in (None, 255.0):
        keras.utils.set_random_seed(0)
        classifier = models.build_classifier(CFG, S, 3)
        if strong_value is not None:
            trainer = models.build_trainer(classifier, CFG, S, consistency=True)
            views = tf.fill((8, S, S, 3), strong_value)
            for _ in range(5):
                trainer({"labelled": tf.constant(_pixels(8)), "weak": views, "strong": views}, training=True)
        bn = classifier.get_layer("backbone").get_layer("block1_bn1")
        dragged = np.asarray(bn.moving_mean).copy()
        train.recalibrate_batchnorm(classifier, photos, steps=60)
        stats.append((dragged, np.asarray(bn.moving_mean)))
    (_, clean), (dragged, recalibrated) = stats
    assert np.abs(dragged - clean).max() > 10 * np.abs(recalibrated - clean).max()
    np.testing.assert_allclose(recalibrated, clean, atol=0.01 * np.abs(clean).max())


def test_fixmatch_re_estimates_batchnorm_on_its_bn_batches_before_each_validation(monkeypatch):
    """`fixmatch.bn_batches` is how many batches of photos each re-estimation takes."""
    calls, steps = {}, []
    monkeypatch.setattr(train, "fit", lambda *args, **kwargs: calls.update(kwargs) or {})
    monkeypatch.setattr(train, "recalibrate_batchnorm", lambda model, batches, n: steps.append(n))
    classifier = models.build_classifier(CFG, S, 3)
    photos = tf.data.Dataset.from_tensors(tf.constant(_pixels(4))).repeat()
    labelled = tf.data.Dataset.from_tensors((tf.constant(_pixels(4)), tf.constant([0, 1, 2, 0]))).repeat()
    fixmatch.train_classifier(classifier, CFG, S, 3, fixmatch.FixMatchConfig(bn_batches=7), labelled, photos, None,
                              steps_per_epoch=1, stage_dir="unused", photos=photos)
    calls["before_validation"](classifier)
    assert steps == [7]


# --- a new method: one module and one line ----------------------------------------------------------------------

TOY_METHOD = textwrap.dedent('''
    """A toy method, as a newcomer adds one: this module, and its line in the table of `ssl_keras.methods`."""
    import dataclasses
    import sys

    from ssl_keras import classifier_stage, methods
    from ssl_keras.config_base import Classifier, Method, StageConfig


    @dataclasses.dataclass(frozen=True)
    class ToyConfig:
        train: StageConfig = dataclasses.field(default_factory=lambda: StageConfig(epochs=1))


    def classifiers(cfg):
        return [Classifier("toy", "toy", "best so far, tuned again", "toy")]


    def stage(run):
        """The best classifier so far, fine-tuned a second time on the labelled photos."""
        teacher = classifier_stage.best_so_far(run, "toy")
        fit = classifier_stage.fit_labelled(run, run.cfg.toy.train)
        return classifier_stage.run_stage(run, "toy", "teacher", "none", fit, teacher=teacher)


    # The one line: in the source, an entry of the tuple `METHODS` in ssl_keras/methods/__init__.py.
    methods.METHODS = (*methods.METHODS, Method("toy", stage, classifiers, ToyConfig))

    from ssl_keras import run  # reads the table, as every module that needs it does

    data_dir, run_dir = sys.argv[1:]
    for stage_name in ("baseline", "methods", "evaluate", "report"):
        argv = [stage_name, "--run-dir", run_dir]
        if stage_name == "baseline":
            argv += ["--preset", "tiny", "--data-dir", data_dir, "--method", "pretrain,toy",
                     "--set", "toy.train.epochs=2"]
        if run.main(argv) != 0:
            sys.exit(f"stage {stage_name} failed")
''')


@pytest.mark.slow
def test_a_method_added_as_one_module_and_one_line_runs_end_to_end(dogs_dir, tmp_path):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    (tmp_path / "toy_method.py").write_text(TOY_METHOD)
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(tmp_path / "toy_method.py"), dogs_dir, str(run_dir)], cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=repo), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["method"] == ["pretrain", "toy"] and config["toy"]["train"]["epochs"] == 2  # its config, set
    assert len(train.read_history(str(run_dir / "toy" / "history.csv"))["loss"]) == 2
    report = json.loads((run_dir / "report.json").read_text())
    row = report["toy"]
    assert row["label"] == "best so far, tuned again" and row["dir"] == "toy"
    assert row["init"] == "teacher" and row["teacher"] == "baseline"
    scored = json.loads((run_dir / "toy" / "test_metrics.json").read_text())["accuracy"]
    assert 0.0 <= scored <= 1.0 and row["test_accuracy"] == pytest.approx(scored, abs=1e-4)  # report.json rounds
    assert "best so far, tuned again" in proc.stdout  # its row in the summary table
