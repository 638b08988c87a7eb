"""budget.py: the cost of each fit, epochs that fit a budget, and the whole-run line, on made-up throughputs."""

import math
import sys

import pytest

from ssl_keras import budget, config as config_lib, presets

COUNTS = {"labelled": 570, "val": 500, "test": 1000, "unlabelled": 8777, "unlabelled_val": 975, "classes": 10}


def _fits(cfg=None, stages=budget.PLAN_STAGES):
    return budget.fits(cfg or presets.quick(), COUNTS, stages)


def test_budget_imports_no_tensorflow():
    import subprocess

    code = "import sys, ssl_keras.budget; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_fits_of_the_quick_preset():
    q = config_lib.override(presets.quick(), {"also_frozen": True})  # the all-frozen comparison too
    fits = {f.name: f for f in _fits(q)}
    assert list(fits) == ["baseline", "pretext", "finetune_all", "finetune_1", "fixmatch", "evaluate"]
    b = 64
    share = budget.validated_share(q.baseline)  # every 3rd epoch and the last 5: 17 of 41
    assert share == pytest.approx(17 / 41)
    assert fits["baseline"] == budget.Fit("baseline", "baseline", q.baseline.epochs, math.ceil(570 / b), b,
                                          500 / 3 * share)
    assert fits["pretext"] == budget.Fit("pretext", "pretext", q.pretext.epochs, math.ceil(8777 / b), 4 * b,
                                         4 * 975 / 3, pace=budget.PRETEXT_PACE)
    assert fits["finetune_all"].step_samples == pytest.approx(b / 3)  # the whole backbone frozen: forward only
    assert fits["finetune_1"].step_samples == b and fits["finetune_1"].key == "finetune"
    fixmatch = fits["fixmatch"]
    assert (fixmatch.key, fixmatch.epochs, fixmatch.steps) == ("fixmatch.train", q.fixmatch.train.epochs,
                                                               math.ceil(9752 / (7 * b)))
    assert fixmatch.step_samples == pytest.approx(b + 7 * b + 7 * b / 3)
    assert fixmatch.epoch_samples == pytest.approx(500 / 3 + 20 * b / 3)  # BatchNorm re-estimated on 20 batches
    half = {f.name: f for f in _fits(config_lib.override(q, {"fixmatch": {"strong_share": 0.5}}))}["fixmatch"]
    assert half.step_samples == pytest.approx(b + 7 * b / 2 + 7 * b / 3)  # half the strong views through
    more = {f.name: f for f in _fits(config_lib.override(q, {"fixmatch": {"bn_batches": 50}}))}["fixmatch"]
    assert more.epoch_samples == pytest.approx(500 / 3 + 50 * b / 3)
    assert fits["evaluate"] == budget.Fit("evaluate", None, 1, 0, 0, 1000 * 4 / 3)  # 4 classifiers
    assert fits["pretext"].samples == q.pretext.epochs * (138 * 256 + 1300)


def test_fits_of_every_method_and_only_the_stages_asked():
    cfg = config_lib.override(presets.quick(), {"method": list(config_lib.METHODS),
                                                "self_training": {"rounds": 2, "per_class": 100,
                                                                  "rotation_weight": 1.0}})
    fits = {f.name: f for f in _fits(cfg, ("methods",))}
    assert list(fits) == ["rotation_aux_scratch", "rotation_aux", "self_training/round1", "self_training/round2",
                          "fixmatch"]
    assert fits["rotation_aux"].step_samples == 64 + 4 * (64 + 64)
    assert fits["self_training/round2"].steps == math.ceil((570 + 100 * 10) / 64)  # the per-class cap
    assert fits["self_training/round1"].step_samples == 5 * 64  # with the rotation loss
    assert [f.name for f in _fits(cfg, ("pretext", "export"))] == ["pretext"]


def _rates(fits, rate):
    return {f.name: rate for f in fits}


def _seconds(fits, epochs, rate):
    return sum((epochs[f.key] if f.key else f.epochs) * f.epoch_cost / rate for f in fits)


@pytest.mark.parametrize("minutes", [10, 20, 40, 80])
def test_fit_budget_keeps_proportions_and_fills_the_budget(minutes):
    fits, rate = _fits(), 150.0  # the slow 2-core machine's rotated samples/s
    base = {"baseline": 60, "pretext": 12, "finetune": 60, "fixmatch.train": 12}
    epochs = budget.fit_budget(fits, base, minutes * 60, _rates(fits, rate))
    assert set(epochs) == set(base)
    seconds = _seconds(fits, epochs, rate)
    assert seconds <= minutes * 60
    # The proportions, to an epoch: each section within one epoch of its exact share of the budget.
    evaluate = fits[-1].samples / rate
    factor = (minutes * 60 - evaluate) / _seconds(fits[:-1], base, rate)
    for key in base:
        assert abs(epochs[key] - base[key] * factor) <= 1, (key, epochs[key], base[key] * factor)
    one_more = _seconds(fits, {k: n + 1 for k, n in epochs.items()}, rate)
    assert one_more > minutes * 60  # the budget is used: one more epoch of each would not fit


def test_fit_budget_scales_up_and_has_a_floor():
    fits = _fits()
    base = {"baseline": 60, "pretext": 12, "finetune": 60, "fixmatch.train": 12}
    at_preset = _seconds(fits, base, 1000.0)
    up = budget.fit_budget(fits, base, 2 * at_preset, _rates(fits, 1000.0))
    assert up["pretext"] >= 23 and up["baseline"] >= 119  # twice the time: about twice the epochs
    assert budget.fit_budget(fits, base, 1.0, _rates(fits, 1000.0)) == dict.fromkeys(base, 1)  # the shortest run
    assert budget.fit_budget(fits, base, -30.0, _rates(fits, 1000.0)) == dict.fromkeys(base, 1)


def test_fit_budget_counts_evaluate_and_each_fits_rate():
    fits = [budget.Fit("a", "a", 10, 10, 10.0, 0.0), budget.Fit("b", "b", 10, 10, 10.0, 0.0),
            budget.Fit("evaluate", None, 1, 0, 0, 100.0)]
    # a: 100 samples an epoch at 100/s = 1 s; b at 50/s = 2 s; evaluate 100 samples at 100/s = 1 s.
    rates = {"a": 100.0, "b": 50.0, "evaluate": 100.0}
    assert budget.fit_budget(fits, {"a": 10, "b": 10}, 31.0, rates) == {"a": 10, "b": 10}
    assert budget.fit_budget(fits, {"a": 10, "b": 10}, 16.0, rates) == {"a": 5, "b": 5}
    assert budget.fit_budget(fits, {"a": 2, "b": 1}, 16.0, rates) == {"a": 7, "b": 4}  # 2:1 as near as fits


def test_a_cap_shrinks_a_run_that_would_be_late_and_never_grows_one_that_fits():
    fits = [budget.Fit("a", "a", 10, 10, 10.0, 0.0), budget.Fit("b", "b", 10, 10, 10.0, 0.0),
            budget.Fit("evaluate", None, 1, 0, 0, 100.0)]
    rates = {"a": 100.0, "b": 50.0, "evaluate": 100.0}  # the config's 10 + 10 epochs take 31 s
    assert budget.fit_budget(fits, {"a": 10, "b": 10}, 62.0, rates) == {"a": 20, "b": 20}  # a budget grows
    assert budget.fit_budget(fits, {"a": 10, "b": 10}, 62.0, rates, grow=False) == {"a": 10, "b": 10}
    assert budget.fit_budget(fits, {"a": 10, "b": 10}, 31.0, rates, grow=False) == {"a": 10, "b": 10}
    assert budget.fit_budget(fits, {"a": 10, "b": 10}, 16.0, rates, grow=False) == {"a": 5, "b": 5}
    assert budget.fit_budget(fits, {"a": 10, "b": 10}, 0.0, rates, grow=False) == {"a": 1, "b": 1}


def test_a_cap_cuts_the_stage_about_to_start_last():
    fits = [budget.Fit("a", "a", 10, 10, 10.0, 0.0), budget.Fit("b", "b", 10, 10, 10.0, 0.0),
            budget.Fit("evaluate", None, 1, 0, 0, 100.0)]
    rates = {"a": 100.0, "b": 50.0, "evaluate": 100.0}  # a: 1 s an epoch, b: 2 s, evaluate 1 s; the config 31 s
    base = {"a": 10, "b": 10}
    assert budget.fit_cap(fits, {"a"}, base, 31.0, rates) == base  # the config fits: as given
    # 21 s: a keeps its 10 epochs (10 + 10 halved + 1 = 21 fits), b gets the 10 s left: 5 epochs. In proportion: 6, 7.
    assert budget.fit_cap(fits, {"a"}, base, 21.0, rates) == {"a": 10, "b": 5}
    assert budget.fit_budget(fits, base, 21.0, rates, grow=False) == {"a": 6, "b": 7}
    # 16 s: even b at half does not make room for all of a: a gets its epochs of the halved plan (7 + 8 in 15 s),
    # b the 8 s left (4 epochs). In proportion: 5, 5.
    assert budget.fit_cap(fits, {"a"}, base, 16.0, rates) == {"a": 7, "b": 4}
    assert budget.fit_cap(fits, {"a", "b"}, base, 16.0, rates) == budget.fit_budget(fits, base, 16.0, rates,
                                                                                    grow=False)  # nothing after
    assert budget.fit_cap(fits[1:], {"b"}, base, 16.0, rates) == {"b": 7}  # the last stage: as fit_budget


def test_the_cap_keeps_quick_rotation_epochs_where_a_pessimistic_plan_cut_one():
    # A run of quick (BENCHMARKS §6.3, round 22, `plr2x` seed 1): the cap scaled to 4.188 min, 212.6 s left after
    # the baseline, which ran at 1,318 samples/s; the rotation task priced at 1.25x that. The proportional cut gave
    # 4/43/7 epochs; the rotation task then ran at 1.8x the baseline, and the stages took 172 s of the cap's 251.
    fits = [f for f in budget.fits(presets.quick(), dict(COUNTS, test=2924)) if f.name != "baseline"]
    rates = {f.name: 1317.9 * (budget.PRETEXT_PACE if f.name == "pretext" else 1) for f in fits}
    base = {"pretext": 5, "finetune": 46, "fixmatch.train": 8}
    assert budget.fit_budget(fits, base, 212.6, rates, grow=False) == {"pretext": 4, "finetune": 43,
                                                                       "fixmatch.train": 7}
    epochs = budget.fit_cap(fits, {"pretext"}, base, 212.6, rates)
    assert epochs["pretext"] == 5
    assert sum((epochs[f.key] if f.key else 1) * f.epoch_cost / rates[f.name] for f in fits) <= 212.6


@pytest.mark.parametrize("rates, base, match", [
    ({"a": 0.0}, {"a": 1}, "rate > 0"),
    ({}, {"a": 1}, "rate > 0"),
    ({"a": 1.0}, {}, "base epochs"),
    ({"a": 1.0}, {"a": 0}, "base epochs"),
])
def test_fit_budget_errors(rates, base, match):
    with pytest.raises(ValueError, match=match):
        budget.fit_budget([budget.Fit("a", "a", 1, 1, 1.0, 0.0)], base, 10.0, rates)


def test_planned_and_duration():
    budgeted = config_lib.override(presets.quick(), {"budget_minutes": 5})
    cfg = budget.planned(budgeted, {"pretext": 3, "fixmatch.train": 8})
    assert (cfg.pretext.epochs, cfg.fixmatch.train.epochs) == (3, 8)
    assert (cfg.budget_minutes, cfg.max_minutes) == (None, None)
    assert cfg.baseline.epochs == presets.quick().baseline.epochs
    assert cfg.fixmatch.train.learning_rate == presets.quick().fixmatch.train.learning_rate
    assert [budget.duration(s) for s in (4.4, 89, 90, 599, 600, 3000)] == \
        ["4 s", "89 s", "1.5 min", "10.0 min", "10 min", "50 min"]


class FakeTime:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_clock_line_as_a_run_goes():
    fits = [budget.Fit("baseline", "baseline", 10, 10, 100.0, 0.0),  # 1,000 samples an epoch
            budget.Fit("pretext", "pretext", 4, 10, 400.0, 0.0),  # 4,000 samples an epoch
            budget.Fit("evaluate", None, 1, 0, 0, 3000.0)]
    now, lines = FakeTime(), []
    clock = budget.Clock(fits, root="/runs/r", log=lines.append, now=now, extra="+ export")
    assert clock.name("/runs/r/self_training/round1") == "self_training/round1"
    assert clock.seconds_left() is None and "whole run ≈ ?" in clock.line()

    now.t = 5.0
    clock.start("baseline", 10, 10)
    now.t = 7.0
    clock.measured("baseline", 0.5, seconds_per_step=0.2)  # 500 samples/s; 9.5 epochs of 1,000 left: 19 s
    assert lines == ["[plan] baseline 10 epochs ≈ 21 s (running) · pretext 4 epochs ≈ 32 s · evaluate ≈ 6 s · "
                     "whole run ≈ 64 s + export (this machine: 500 samples/s in baseline)"]
    clock.measured("baseline", 2.0, seconds_per_epoch=1.0)  # an update: 1,000 samples/s, no new line
    assert len(lines) == 1
    now.t = 15.0
    clock.finish("baseline", 10.0)
    assert lines[-1] == ("[plan] baseline 10 epochs took 10 s · pretext 4 epochs ≈ 16 s · evaluate ≈ 3 s · "
                         "whole run ≈ 34 s + export (this machine: 1,000 samples/s in baseline)")
    clock.start("pretext", 4, 10)
    clock.measured("pretext", 0.25, seconds_per_step=0.2)  # 2,000 samples/s
    assert "pretext 4 epochs ≈ 8 s (running)" in lines[-1] and "evaluate ≈ 2 s" in lines[-1]
    now.t = 23.0
    clock.finish("pretext", 8.0, epochs=3)  # stopped early
    now.t = 25.0
    clock.finish("evaluate", 2.0)
    assert lines[-1] == ("[plan] baseline 10 epochs took 10 s · pretext 3 epochs took 8 s · evaluate took 2 s · "
                         "whole run 25 s + export (this machine: 2,000 samples/s in pretext)")


def test_clock_rates_for_fits_not_started():
    fits = [budget.Fit("small", "a", 1, 10, 64.0, 0.0), budget.Fit("big", "b", 1, 10, 256.0, 0.0),
            budget.Fit("bigger", "c", 1, 10, 600.0, 0.0), budget.Fit("evaluate", None, 1, 0, 0, 10.0),
            budget.Fit("frozen", "d", 1, 10, 64 / 3, 0.0, frozen=True)]
    clock = budget.Clock(fits, log=lambda line: None, rate=1000.0)  # a probe's
    assert clock.rate_for(fits[2]) == 1000.0 and clock.rate_from == "probe"
    clock.start("small")
    clock.measured("small", 0.5, seconds_per_step=0.1)  # 640 samples/s
    clock.start("big")
    clock.measured("big", 0.5, seconds_per_step=0.2)  # 1,280 samples/s
    clock.start("small")
    assert clock.rate_for(fits[2]) == 640.0  # the slowest measured, not the closest step (256 samples)
    clock.start("frozen")
    clock.measured("frozen", 0.5, seconds_per_step=64 / 3 / 100)  # 100 samples/s, forward passes only
    assert clock.rate_for(fits[2]) == 640.0  # a frozen backbone's rate is left out
    clock.start("small")
    clock.measured("small", 0.5, seconds_per_epoch=10 * 64 / 320)  # 320 samples/s, measured last
    assert clock.rate_for(fits[2]) == 320.0
    assert clock.rate_for(fits[3]) == 320.0  # no step: the latest rate
    clock.finish("evaluate", 50.0)  # evaluate's time says nothing of the training rate
    assert clock.rate == 320.0


def test_clock_prices_the_rotation_task_at_its_pace_over_the_slowest_measured():
    fits = {f.name: f for f in _fits()}
    clock = budget.Clock(list(fits.values()), log=lambda line: None)
    clock.start("baseline")
    clock.measured("baseline", 0.5, seconds_per_step=64 / 400)  # 400 samples/s
    assert clock.rate_for(fits["pretext"]) == pytest.approx(400 * budget.PRETEXT_PACE)
    assert clock.rate_for(fits["fixmatch"]) == 400.0  # every other fit at the slowest measured
    clock.start("pretext")
    clock.measured("pretext", 0.5, seconds_per_step=256 / 900)  # its own rate, once measured
    assert clock.rate_for(fits["pretext"]) == pytest.approx(900.0)
    assert clock.rate_for(fits["fixmatch"]) == 400.0


def test_clock_plans_from_the_slowest_probe_until_a_fit_is_measured():
    fits = [budget.Fit("small", "a", 1, 10, 64.0, 0.0), budget.Fit("big", "b", 1, 10, 256.0, 0.0),
            budget.Fit("evaluate", None, 1, 0, 0, 10.0)]
    clock = budget.Clock(fits, log=lambda line: None, rate=1000.0)
    clock.probes = {256: 1000.0, 64: 600.0}
    assert clock.rate_for(fits[0]) == clock.rate_for(fits[1]) == 600.0
    assert clock.rate_for(fits[2]) == 1000.0  # no step: the latest rate
    clock.start("big")
    clock.measured("big", 0.5, seconds_per_step=0.5)  # 512 samples/s: a measured fit beats the probes
    assert clock.rate_for(fits[0]) == 512.0


def test_clock_speed_gives_each_finished_fit_its_share_of_the_matmul_rate():
    fits = [budget.Fit("baseline", "baseline", 2, 10, 100.0, 0.0), budget.Fit("pretext", "pretext", 1, 10, 400.0, 0.0)]
    clock = budget.Clock(fits, log=lambda line: None)
    clock.matmul, clock.flops = 100.0, 50e6  # 100 GFLOP/s; 50 MFLOP a sample
    clock.spent["baseline"] = {"batchnorm": 0.0, "validation": 1.0, "checkpoint": 0.5}
    clock.finish("baseline", 4.0)  # 2,000 samples in 4 s: 500 samples/s = 25 GFLOP/s
    speed = clock.speed()
    assert speed == {"baseline": {"epochs": 2, "seconds": 4.0, "samples": 2000, "samples_per_s": 500.0,
                                  "of_matmul": 0.25,
                                  "spent_s": {"batchnorm": 0.0, "validation": 1.0, "checkpoint": 0.5}}}
    assert "= 25% of its 100 GFLOP/s float32 matmul" in clock.line()


def test_clock_keeps_started_fits_when_replanned():
    fits = [budget.Fit("a", "a", 10, 10, 10.0, 0.0), budget.Fit("b", "b", 10, 10, 10.0, 0.0)]
    clock = budget.Clock(fits, log=lambda line: None)
    clock.start("a", 10, 10)
    clock.set_fits([budget.Fit("a", "a", 3, 10, 10.0, 0.0), budget.Fit("b", "b", 3, 10, 10.0, 0.0)])
    assert clock.fits["a"].epochs == 10 and clock.fits["b"].epochs == 3


def test_fits_with_a_pretext_batch_and_validation_every_third_epoch():
    cfg = config_lib.override(presets.quick(), {"data": {"pretext_batch_size": 128},
                                                "baseline": {"epochs": 20, "validate_every": 3},
                                                "finetune": {"validate_every": 1}})
    fits = {f.name: f for f in _fits(cfg)}
    assert (fits["pretext"].steps, fits["pretext"].step_samples) == (math.ceil(8777 / 128), 4 * 128)
    # epochs 3, 6, 9, 12, 15 (1-based) and the last 5 (16-20): 10 of 20 validated
    assert fits["baseline"].epoch_samples == pytest.approx(500 / 3 * 10 / 20)
    assert fits["finetune_1"].epoch_samples == pytest.approx(500 / 3)  # validate_every 1: every epoch
