"""The loss-curve prediction against a closed form: a loss surface whose best LR slows its fall
with the horizon, as measured on the teacher task (docs/transfer.md)."""

import math

import numpy as np

from sweeps.transfer.curves import joint_table, loss_curves
from sweeps.transfer.fit import fit_power_law

ALPHA, FLOOR_AT, CURVATURE, AMPLITUDE, TILT = 0.7, math.log(0.004), 0.03, 0.082, 0.8
GRID = 1e-4 * 2 ** (np.arange(21) / 2)  # two LRs per octave, 1e-4 to 0.1


def loss(lr, horizon):
    """floor rising away from 0.004, plus an amplitude that a smaller LR has more of: the best
    LR falls with the horizon towards 0.004, more slowly the longer the run."""
    x = np.log(lr)
    return 1.0 + CURVATURE * (x - FLOOR_AT) ** 2 + AMPLITUDE * np.exp(-TILT * x) * horizon**-ALPHA


def true_best(horizon: float) -> float:
    """Where d loss / d log lr = 0, by bisection (the derivative rises with log lr)."""
    lo, hi = math.log(1e-5), math.log(10.0)
    for _ in range(200):
        mid = (lo + hi) / 2
        slope = (
            2 * CURVATURE * (mid - FLOOR_AT)
            - TILT * AMPLITUDE * math.exp(-TILT * mid) * horizon**-ALPHA
        )
        lo, hi = (mid, hi) if slope < 0 else (lo, mid)
    return math.exp(lo)


def lanes(horizon, seeds=(0, 1), noise=0.0, rng=None):
    lrs, ids, losses = [], [], []
    for s in seeds:
        for lr in GRID:
            lrs.append(float(lr))
            ids.append(s)
            losses.append(float(loss(lr, horizon)) + (rng.normal(0, noise) if noise else 0.0))
    return lrs, ids, losses


def test_the_best_lr_at_8x_the_longest_horizon_is_read_from_the_loss_curves():
    horizons, target = [50, 100, 200, 400], 3200
    truth = true_best(target)
    got = loss_curves([lanes(h) for h in horizons], horizons, target, true_best(400))
    assert got is not None and not got.at_window_edge
    assert abs(math.log2(got.best_lr / truth)) < 0.1
    assert abs(got.alpha - ALPHA) <= 0.05  # the shared exponent recovered from the losses
    assert got.held_out_error is not None and got.held_out_error < 0.3
    # the premise: on this surface the line through the swept best LRs misses the target
    bests = [true_best(h) for h in horizons]
    line = fit_power_law(horizons, bests, [0.05] * 4, np.tile(bests, (10, 1)))
    assert abs(math.log2(line.predict(target) / truth)) > 0.3


def test_its_interval_comes_from_the_seeds_and_covers_the_truth():
    rng = np.random.default_rng(3)
    horizons, target = [50, 100, 200, 400], 3200
    noisy = [lanes(h, seeds=(0, 1, 2, 3), noise=0.002, rng=rng) for h in horizons]
    got = loss_curves(noisy, horizons, target, true_best(400))
    low, high = got.interval
    assert low < got.best_lr < high and low <= true_best(target) <= high
    exact = loss_curves([lanes(h) for h in horizons], horizons, target, true_best(400))
    assert exact.interval[1] / exact.interval[0] < high / low  # no noise: no width


def test_a_valley_that_jumps_at_the_longest_horizon_fails_the_held_out_check():
    horizons, target = [50, 100, 200, 400], 3200
    per = [lanes(h) for h in horizons[:-1]]
    lrs, ids, losses = lanes(400)
    jumped = [
        v + CURVATURE * (math.log(lr) - math.log(2e-4)) ** 2
        for lr, v in zip(lrs, losses, strict=True)
    ]
    per.append((lrs, ids, jumped))  # the 400-step valley moved far below the trend
    measured = float(np.array(lrs)[int(np.argmin(jumped))])
    got = loss_curves(per, horizons, target, measured)
    assert got.held_out_error is not None and got.held_out_error > 0.5


def test_three_horizons_predict_but_cannot_be_checked_and_two_do_not_predict():
    three = loss_curves([lanes(h) for h in (100, 200, 400)], [100, 200, 400], 3200, 0.01)
    assert three is not None and three.held_out_error is None
    assert loss_curves([lanes(h) for h in (200, 400)], [200, 400], 3200, 0.01) is None


def test_only_lrs_tested_at_every_horizon_and_finite_ones_are_fitted():
    a = ([0.1, 0.2, 0.3], [0, 0, 0], [1.0, 0.5, 2.0])
    b = ([0.1, 0.2, 0.25, 0.3], [0, 0, 0, 0], [1.0, math.inf, 0.4, 2.0])  # 0.25: refined here
    lrs, table = joint_table([a, b])
    assert lrs.tolist() == [0.1, 0.2, 0.3] and table.shape == (2, 3, 1)
    assert math.isinf(table[1, 1, 0])


def test_one_seed_still_gets_an_interval_from_the_bracket():
    horizons = [50, 100, 200, 400]
    one = loss_curves([lanes(h, seeds=(0,)) for h in horizons], horizons, 3200, true_best(400))
    low, high = one.interval
    assert low < one.best_lr < high and high / low > 1.05  # not a zero-width claim
