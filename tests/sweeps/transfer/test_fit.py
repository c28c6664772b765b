"""The fit against a known truth: best LRs drawn from a power law with noise of known size."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sweeps.transfer.fit import fit_power_law, judge
from sweeps.transfer.points import best_lr, still_rising

VALUES = [100, 200, 400, 800]


def _loss_curves(true_best: float, grid: np.ndarray, seeds: int, rng) -> np.ndarray:
    """A quadratic valley in log LR around `true_best`, each seed with its own noise."""
    base = 0.3 + 0.05 * np.log(grid / true_best) ** 2
    return base[:, None] + rng.normal(0, 0.002, (len(grid), seeds))


@pytest.mark.parametrize("exponent", [-0.3, 0.0, 0.5])
def test_the_fit_recovers_a_known_exponent_and_its_interval_covers_it(exponent):
    rng = np.random.default_rng(7)
    grid = np.geomspace(1e-4, 1.0, 17)  # a step of 1.78x: the vertex does the finer work
    found = []
    for v in VALUES:
        truth = 0.01 * (v / 100) ** exponent
        losses = _loss_curves(truth, grid, 3, rng)
        lrs = np.repeat(grid, 3)
        seeds = np.tile([0, 1, 2], len(grid))
        found.append(best_lr(lrs, seeds, losses.ravel(), seed=len(found)))
    for v, b in zip(VALUES, found, strict=True):
        truth = 0.01 * (v / 100) ** exponent
        assert b.bracket[0] <= truth <= b.bracket[1]
        assert abs(math.log(b.best_lr / truth)) < math.log(1.15)  # the vertex, not the grid
    fit = fit_power_law(
        VALUES, [b.best_lr for b in found], [0.5 * math.log(b.bracket[1] / b.bracket[0])
                                             for b in found],
        np.stack([b.draws for b in found], axis=1),
    )  # fmt: skip
    lo, hi = fit.exponent_interval
    assert lo <= exponent <= hi
    assert abs(fit.exponent - exponent) < 0.1
    target = 6400
    predicted, (p_lo, p_hi) = fit.predict(target), fit.interval(target)
    truth = 0.01 * (target / 100) ** exponent
    assert p_lo <= truth <= p_hi and p_lo < predicted < p_hi
    reliable, note = judge(fit, VALUES, target, axis="steps")
    assert reliable, note
    if exponent == 0.0:
        assert "does not move with steps" in note
    else:
        assert f"steps^{fit.exponent:.2f}" in note


def test_a_bent_trend_far_target_and_overfitting_are_called_unreliable():
    rng = np.random.default_rng(0)
    values = [100, 200, 400, 800]
    truths = [0.01, 0.01, 0.003, 0.0003]  # flat, then falling fast: no power law
    draws = np.stack([t * np.exp(rng.normal(0, 0.03, 400)) for t in truths], axis=1)
    fit = fit_power_law(values, truths, [0.05] * 4, draws)
    reliable, note = judge(fit, values, 1600, axis="steps")
    assert not reliable and "bends" in note
    straight = fit_power_law(values[:2], truths[:2], [0.05] * 2, draws[:, :2])
    reliable, note = judge(straight, values[:2], 100 * 200, axis="steps")
    assert not reliable and "far beyond" in note
    reliable, note = judge(straight, values[:2], 400, axis="steps", overfitting_at=200)
    assert not reliable and "overfitting" in note


def test_still_rising_sees_a_loss_climbing_off_its_low():
    assert still_rising([2.0, 1.0, 0.5, 0.6])
    assert not still_rising([2.0, 1.0, 0.5, 0.5])
    assert not still_rising([2.0, 1.0, 0.5, 0.51])


def test_no_best_lr_where_every_lr_failed():
    assert best_lr([0.1, 1.0], [0, 0], [math.inf, math.nan]) is None


def test_a_trend_that_misses_itself_is_caught_even_with_coarse_points():
    """Local exponents -0.7 then -0.4 (a bend) with brackets too wide for the chi-square: the
    held-out check still sees it and widens the interval; a straight trend passes it."""
    from sweeps.transfer.fit import held_out_error

    values, sigmas = [100, 200, 400], [0.35] * 3
    bent = [0.016, 0.016 * 2**-0.7, 0.016 * 2**-1.1]
    carried = held_out_error(values, bent, sigmas, 3200)
    assert carried == pytest.approx(0.3 * 3, rel=1e-6)  # missed by 0.3 octaves, 3 octaves on
    draws = np.tile(bent, (50, 1))
    fit = fit_power_law(values, bent, sigmas, draws)
    reliable, note = judge(fit, values, 3200, axis="steps", carried_error=carried)
    assert not reliable and "misses it" in note
    straight = [0.016 * (v / 100) ** -0.5 for v in values]
    assert held_out_error(values, straight, sigmas, 3200) == pytest.approx(0.0, abs=1e-9)
    assert held_out_error(values[:2], straight[:2], sigmas[:2], 3200) is None
    fit2 = fit_power_law(values[:2], straight[:2], sigmas[:2], np.tile(straight[:2], (50, 1)))
    reliable, note = judge(fit2, values[:2], 800, axis="steps")
    assert not reliable and "two values only" in note


def test_a_target_that_repeats_the_data_is_another_regime():
    from sweeps.transfer.analysis import epochs_text

    text = epochs_text("steps", [100, 200, 400], 3200, 400, 32, 48_000)
    assert "2.1 times" in text and "0.27 times" in text
    assert epochs_text("steps", [100, 200, 400], 3200, 400, 32, 250_000) is None
    assert epochs_text("batch_size", [16, 32], 512, 1000, 32, 100_000) is not None


def test_between_the_trend_and_staying_put_and_its_middle():
    from sweeps.transfer.analysis import _between

    got = _between(0.002, [100, 200, 400], [0.016, 0.01, 0.008], 3200)
    assert got["between"] == [0.002, 0.008]
    assert got["middle"] == pytest.approx(0.004)


def test_a_slowing_trend_is_carried_on_as_it_slows_and_only_then():
    import math

    from sweeps.transfer.fit import slowing_trend

    # log2 best LR whose log-log slope decays by 0.6 per doubling: s(u) = -0.7·0.6^u
    def truth(x):
        u = math.log2(x / 100)
        return 2 ** (-6 + (-0.7) * (0.6**u - 1) / math.log(0.6))

    xs = [100, 200, 400]
    got = slowing_trend(xs, [truth(x) for x in xs], 3200)
    assert abs(math.log2(got / truth(3200))) < 0.02
    # the plain power law through the same three points misses by more than 0.5 log2
    b, a = np.polyfit(np.log2(xs), [math.log2(truth(x)) for x in xs], 1)
    assert abs(a + b * math.log2(3200) - math.log2(truth(3200))) > 0.5
    assert slowing_trend(xs, [0.01, 0.005, 0.0025], 3200) is None  # straight: the power law's
    assert slowing_trend(xs, [0.01, 0.008, 0.005], 3200) is None  # steepening
    assert slowing_trend(xs, [0.01, 0.008, 0.009], 3200) is None  # turning


def _geometric_slowdown(x: float) -> float:
    """A best LR whose log-log slope decays by 0.6 per doubling from -0.9 at 50 steps."""
    u = math.log2(x / 50)
    return 2 ** (-6 + (-0.9) * (0.6**u - 1) / math.log(0.6))


def test_with_four_horizons_the_slowing_trend_checks_itself_and_is_chosen_and_reliable():
    from sweeps.transfer.fit import (
        choose_method,
        held_out_error,
        slowing_held_out_error,
        slowing_interval,
        slowing_trend,
    )

    xs = [50, 100, 200, 400]
    lrs = [_geometric_slowdown(x) for x in xs]
    sigmas = [0.1] * 4
    got = slowing_trend(xs, lrs, 3200)
    assert abs(math.log2(got / _geometric_slowdown(3200))) < 0.02
    slow_err = slowing_held_out_error(xs, lrs, 3200)
    line_err = held_out_error(xs, lrs, sigmas, 3200)
    assert slow_err < 0.05 < 0.5 < line_err  # the line, fitted on 50-200, misses 400
    assert choose_method(line_err, slow_err) == "slowing"
    assert choose_method(0.1, 0.2) == "power_law"  # a line that holds better keeps its place
    assert choose_method(line_err, None) == "power_law"
    rng = np.random.default_rng(3)
    draws = np.array(lrs) * np.exp(rng.normal(0, 0.01, (200, 4)))
    interval = slowing_interval(xs, draws, 3200)
    assert interval[0] <= got <= interval[1] and interval[1] / interval[0] < 1.5
    fit = fit_power_law(xs, lrs, sigmas, draws)
    reliable, note = judge(fit, xs, 3200, axis="steps", carried_error=slow_err,
                           method="slowing", interval=interval)  # fmt: skip
    assert reliable, note
    # the rules that do not depend on the method still hold
    reliable, note = judge(fit, xs, 3200, axis="steps", carried_error=slow_err,
                           method="slowing", interval=interval, overfitting_at=400,
                           regime="the target repeats the data")  # fmt: skip
    assert not reliable and "overfitting" in note and "repeats the data" in note
    reliable, note = judge(fit, xs, 3200, axis="steps", carried_error=slow_err,
                           method="slowing", interval=None)  # fmt: skip
    assert not reliable and "undefined in most bootstrap draws" in note


def test_the_slowing_trends_held_out_check_flags_a_trend_that_turns():
    from sweeps.transfer.fit import HELD_OUT, slowing_held_out_error

    xs = [50, 100, 200, 400]
    lrs = [_geometric_slowdown(x) for x in xs[:3]]
    lrs.append(lrs[-1] * 2**0.2)  # slowing over 50-200, then the best LR rises again
    carried = slowing_held_out_error(xs, lrs, 3200)
    assert carried > HELD_OUT
    fit = fit_power_law(xs, lrs, [0.1] * 4, np.tile(lrs, (20, 1)))
    reliable, note = judge(fit, xs, 3200, axis="steps", carried_error=carried,
                           method="slowing", interval=[0.9 * lrs[-1], 1.1 * lrs[-1]])  # fmt: skip
    assert not reliable and "the slowing trend misses it" in note
    assert slowing_held_out_error(xs[1:], lrs[1:], 3200) is None  # three values: no check


def test_a_horizon_trend_that_moves_the_best_lr_past_the_longest_is_not_reliable():
    # Teacher, 200,000 rows, SGD, horizons 50-400 -> 3,200 (docs/transfer.md): a clean line
    # that passed its held-out check, and the fall slowed past 400: the trend missed 2x.
    xs, lrs = [50, 100, 200, 400], [1.11, 0.86, 0.53, 0.41]
    sigmas = [0.05] * 4
    draws = np.exp(np.log(lrs) + np.random.default_rng(0).normal(0, 0.05, (200, 4)))
    fit = fit_power_law(xs, lrs, sigmas, draws)
    reliable, note = judge(fit, xs, 3200, axis="steps", stay_lr=lrs[-1])
    assert not reliable
    assert "move slowed past the swept horizons" in note and "(from 0.41)" in note
    # the same rule leaves a trend that barely moves past the longest alone ...
    flat = fit_power_law(xs, [0.5, 0.49, 0.5, 0.48], sigmas, draws / np.array(lrs) * 0.5)
    reliable, note = judge(flat, xs, 3200, axis="steps", stay_lr=0.48)
    assert reliable, note
    # ... and the other axes, where no slowing was measured
    reliable, note = judge(fit, xs, 3200, axis="batch_size", stay_lr=lrs[-1])
    assert "longest horizon" not in note


def test_loss_curves_are_judged_on_their_own_check_and_longer_runs_doing_worse_is_overfitting():
    xs, lrs = [50, 100, 200, 400], [1.11, 0.86, 0.53, 0.41]
    draws = np.exp(np.log(lrs) + np.random.default_rng(0).normal(0, 0.05, (200, 4)))
    fit = fit_power_law(xs, lrs, [0.05] * 4, draws)
    # the line alone is not trusted past 400 (it moves 2.9x); the loss curves, checked, are
    common = dict(axis="steps", stay_lr=0.41, method="loss_curves", interval=[0.25, 0.31])
    reliable, note = judge(fit, xs, 3200, carried_error=0.04, **common)
    assert reliable, note
    reliable, note = judge(fit, xs, 3200, carried_error=None, **common)
    assert not reliable and "cannot be checked" in note  # three horizons' worth: no check
    reliable, note = judge(fit, xs, 3200, carried_error=0.8, **common)
    assert not reliable and "the loss curves miss it by enough" in note
    reliable, note = judge(fit, xs, 3200, carried_error=0.04, longer_worse=(400, 200), **common)
    assert not reliable and "at steps 400 is above the one at 200" in note
    reliable, note = judge(fit, xs, 3200, carried_error=0.04, at_window_edge=True, **common)
    assert not reliable and "edge of the LRs fitted" in note
