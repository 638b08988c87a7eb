"""The named presets. Each docstring is the one home of its command, machine, time and result.

A preset is a `Config` (`ssl_keras.config`); the command line starts from one
(`--preset`, default `default`) and overrides it.
"""

from __future__ import annotations

import dataclasses

from ssl_keras.config import Config, DataConfig, ModelConfig, StageConfig
from ssl_keras.methods.fixmatch import FixMatchConfig
from ssl_keras.methods.rotation_aux import RotationAuxConfig
from ssl_keras.methods.self_training import SelfTrainingConfig


def quick() -> Config:
    """The first command, 32 px: 11.9-14.0 minutes measured on a slow 2-core CPU, at most 15 (its time cap).

    `python -m ssl_keras.run --preset quick --data-dir ../shared/data/dogs`

    The slow CPU is one whose float32 matmul reaches 50 GFLOP/s (the slowest seen). Measured (BENCHMARKS §6.5, seeds
    0-2): a 2-core AMD EPYC held by a CPU quota to a matmul of 45-51 GFLOP/s (`benchmarks/slow_cpu.sh 0.5`) ran the
    command in 12.6-13.3 minutes, export excluded, and gained +6.3, +5.2, +4.7 points; with the cap's rule of rounds
    21-22, in an hour when it ran slower (matmul 44-50), 13.0-14.0 minutes and +5.8, +6.8, +3.4; as it stands (the
    rotation task's learning rate x2, matmul 42-49), 13.5-13.7 minutes and +5.5, +6.5, +4.1; again (a fresh clone's
    seed 0, then seeds 1-2; matmul 48-52), 12.6, 12.3, 11.9 minutes and +6.7, +4.7, +6.8. Other times on it are
    projected from faster machines (a run's time x their matmul rate / 50): 11.7-12.9 slow minutes from a 2-core AMD
    EPYC (matmul 198-210 GFLOP/s, §6.3 rounds 16-17); a Xeon, whose training runs at a smaller share of its matmul
    rate, projected about 1.25x as much for `quick` before round 9. Hence `max_minutes=15`: once the baseline's
    speed is measured, a run whose plan ends after 15 minutes gives the stages not yet begun fewer epochs, the stage
    about to start last (never more: on a faster machine the epochs stay as given). The plan rates those stages at
    the baseline's samples/s, the slowest (the rotation task at 1.25x it), so it ends early: a cap of 14, scaled to
    this EPYC's speed, cut the rotation task to 3 epochs in 2 of 3 seeds of runs that then took 11.5-13.0 projected
    minutes (§6.4); at 15, cutting all in proportion took a rotation epoch in 3 of 12 runs that ended well inside it
    (§6.3, rounds 21-22), hence `budget.fit_cap`.
    32 px kept the most gain of the workloads tried in 13 slow minutes (BENCHMARKS.md §6.1). Every stage runs a
    one-cycle schedule at 3x the default learning rate (the rotation task at 6x since round 23), and the labelled
    stages validate every 3rd epoch (and the last 5) (§6.3). Its training pipelines run without tf.data's
    autotuning (§6.3, round 4). Its backbone has 1.5x the default channels (24-192, 245k parameters), chosen side
    by side on a 2-core Intel Xeon (rounds 5 to 7).
    It skips the all-frozen comparison (never shipped; `--set also_frozen=true` brings it back; round 9). Epochs
    41/5/46/8 (baseline, rotation task, fine-tuning, FixMatch): rounds 10 and 11 of §6.3 gave the minutes round 9
    left to one more rotation epoch and two more FixMatch epochs; validation of the shipped 37.8 against 35.6 %
    over the two rounds (higher in 5 of 6 seeds), 12.6-12.8 against 11.3-11.6 projected minutes. Rounds 13-15:
    BatchNorm re-estimated on 20 batches instead of 50 before each FixMatch validation, and a 9th FixMatch epoch,
    validated 36.6 against 35.6 % (rounds 13-14, 6 paired seeds) in 11.6-12.1 against 11.8-12.5 projected minutes;
    11 epochs ran into the cap in a slower hour (the rotation task cut to 3 epochs) and validated lower (35.1 %).
    Rounds 16-17: a 5th rotation epoch for the 9th FixMatch epoch validated 38.2 against 36.5 % (6 paired seeds,
    higher in 3, by 3.6-5.2 points; lower in 3, by 0.4-1.6) in 11.7-12.9 against 11.1-12.3 projected minutes.
    Round 18, not kept: FixMatch's strong pass on the most confident half of each batch (`fixmatch.strong_share=0.5`)
    validated as FixMatch (36.9 against 36.5 %, 6 paired runs) in 15 % less FixMatch time, but its strong
    augmentation stays whole, so FixMatch fell under 40 % of the matmul rate (37 % in two slowed runs) for about
    half a slow minute. Rounds 19-20, not kept: SoftMatch's weight (`fixmatch.soft`, with or without `align`) and the
    strong augmentation at strength 0.25 or 1.0 validated within 0.3 points of FixMatch as it is (6 paired runs).
    Rounds 21-22, not kept: the rotation task at 24 px for 9 epochs validated lower (36.9 against 37.7 %). Kept
    (rounds 21-23): the rotation task at twice the learning rate (6e-3), higher by 1.0 point in the 6 pairs the cap
    cut in neither (38.8 against 37.7 %, higher in 5), the rotation task learnt better in all 6. Rounds 24-26, not
    kept: the rotation task at 1.2e-2 (36.3 against 38.9 %), fine-tuning at 6e-3 or with no frozen block (lower
    teachers in 6 of 6 pairs), FixMatch at 1.8e-3 (36.9 against 36.7 % on six fixed teachers).
    It scores every test photo (2,924 for ImageWoof; 100 a class before): on 1,000 photos one run's gain is known to
    about ±3 points (95 %) by the photos alone, on 2,924 to ±1.8; the same classifiers scored again on all 2,924
    (`research/full_test.py`, results/full_test) gained +5 or more in 11 of 12 runs against 8 of 12.
    Result: `results/quick` (`python benchmarks/results_table.py --preset quick --seeds 0 1 2 --name quick`, on
    a 2-core AMD EPYC, matmul 172-203 GFLOP/s: +6.6, +6.8, +4.1) and the README, with the machine and its matmul
    rate measured in the same runs.
    On a faster machine, `--budget MINUTES` trains more epochs in the same time.
    """
    fast = dict(schedule="onecycle", learning_rate=3e-3, autotune=False)
    return Config(
        preset="quick",
        data=DataConfig(image_size=32, max_unlabelled=10000, val_per_class=50),
        model=ModelConfig(filters=(24, 48, 96, 192)),
        baseline=StageConfig(epochs=41, **fast, validate_every=3),
        pretext=StageConfig(epochs=5, translate=0.0, zoom=0.0, **dict(fast, learning_rate=6e-3)),
        finetune=StageConfig(epochs=46, **fast, validate_every=3),
        also_frozen=False,
        method=("pretrain", "fixmatch"),
        fixmatch=FixMatchConfig(
            bn_batches=20,
            train=dataclasses.replace(FixMatchConfig().train, epochs=8, schedule="onecycle", learning_rate=9e-4,
                                      autotune=False)
        ),
        max_minutes=15,
    )


def default() -> Config:
    """The article's sizes: 570 labels, ~10k unlabelled photos (~40k rotation samples an epoch).

    `python -m ssl_keras.run --data-dir ../shared/data/dogs`

    Machine: 2-core Intel Xeon, 24 GiB, no GPU. Time: 29-31 minutes a seed with `--method all`; with its own
    method, FixMatch, the sum of those stage times is 17-18 minutes (baseline 1, rotation task 9, both
    fine-tunings 1.5-2, FixMatch 5), plus about 1.5 for the export.
    Result (`python benchmarks/results_table.py --preset default --seeds 0 1 2 --method all --name default`,
    results/default, 2924 test photos): baseline 29.7 +- 1.6 %, SSL fine-tuned 35.3 +- 0.3 %, FixMatch
    38.3 +- 1.1 %: +8.7 points over the baseline (+7.4 to +10.7 over seeds 0-2). FixMatch is the method of the
    highest mean validation accuracy (38.7 %, last 5 epochs) among every method of that table.
    """
    return Config(
        preset="default",
        data=DataConfig(image_size=64, max_unlabelled=10000, val_per_class=50),
        baseline=StageConfig(epochs=60),
        pretext=StageConfig(epochs=24, translate=0.0, zoom=0.0),
        finetune=StageConfig(epochs=60),
        method=("pretrain", "fixmatch"),
    )


def full() -> Config:
    """For a GPU: 128 px, a deeper backbone, the whole unlabelled pool.

    `python -m ssl_keras.run --preset full --data-dir ../shared/data/dogs --mixed-precision`

    Speed on one H200, Keras on JAX (`bash benchmarks/gpu_check.sh`, BENCHMARKS.md §5): the rotation model trains
    2,800 photos/s in float32, 5,200 in mixed_float16. Accuracy not measured: the lent GPU machine has no TensorFlow
    for the photo pipeline.
    """
    return Config(
        preset="full",
        data=DataConfig(image_size=128, batch_size=128, val_per_class=50),
        model=ModelConfig(filters=(32, 64, 128, 256, 256), convs_per_block=2),
        baseline=StageConfig(epochs=100, patience=30),
        pretext=StageConfig(epochs=40, translate=0.0, zoom=0.0),
        finetune=StageConfig(epochs=100, patience=30),
    )


def tiny() -> Config:
    """The end-to-end test's preset: seconds on a CPU; checks plumbing, not accuracy.

    `python -m ssl_keras.run --preset tiny --data-dir ../shared/data/dogs`
    """
    return Config(
        preset="tiny",
        data=DataConfig(
            image_size=32, num_classes=3, labels_per_class=8, val_per_class=4,
            max_unlabelled=64, max_test_per_class=8, batch_size=16,
        ),
        model=ModelConfig(filters=(8, 16), dense_units=16),
        baseline=StageConfig(epochs=2),
        pretext=StageConfig(epochs=2, translate=0.0, zoom=0.0),
        finetune=StageConfig(epochs=2),
        rotation_aux=RotationAuxConfig(train=StageConfig(epochs=2)),
        self_training=SelfTrainingConfig(train=StageConfig(epochs=2)),
        fixmatch=FixMatchConfig(ratio=2, train=StageConfig(epochs=2)),
    )


PRESETS = {"quick": quick, "default": default, "full": full, "tiny": tiny}


def preset(name: str) -> Config:
    """Returns the named preset.

    Raises:
        ValueError: for an unknown name.
    """
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}. Expected one of {sorted(PRESETS)}.")
    return PRESETS[name]()
