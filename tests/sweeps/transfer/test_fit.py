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
