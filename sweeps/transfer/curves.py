"""The best LR at a longer horizon, read from every LR's loss at every swept horizon.

The power law through each horizon's best LR (fit.py) reads three or four numbers, each
located to about ±0.1–0.3 log2, and on every task measured the best LR's fall slowed past the
swept horizons, which a line through them cannot know. This reads the losses themselves:
each LR's final validation loss (mean over seeds) falls with the horizon T as a saturating
power law, the shape of loss-against-data scaling laws,

    L_lr(T) = floor(lr) + amplitude(lr) · T^-alpha,

with one exponent alpha shared by the LRs around the valley (within `WINDOW` of the longest
swept horizon's lowest loss, or its grid neighbours where the grid is coarser; each fitted on
the horizons where it trained: the longest and one more at least) and a floor and an
amplitude of their own (least squares: alpha over `ALPHAS`, the other two linear given it). The best LR at
the target is where the extrapolated losses are lowest: the vertex of a parabola through the
lowest and its neighbours in log LR, as at a swept horizon (points.py). The trade the line
cannot see is in the fit: a smaller LR falls further (a larger amplitude) towards its floor.

Its interval: the seeds resampled with replacement and everything refitted, each draw's
best LR then drawn over the middle half of its bracket (the fitted LRs either side), as
points.py draws a swept value's (2.5–97.5th percentiles; one seed: the bracket alone).
Its check (`LossCurves.held_out_error`): fitted without the longest swept horizon, how far
its best LR there misses the measured one, carried to the target as the line's
`held_out_error` is; it needs four horizons (with three, dropping one leaves each LR
two points for two numbers of its own, and alpha undetermined).

Pure numpy over plain numbers: each swept horizon's lanes as (learning rates, seeds, final
validation losses), as points.py takes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sweeps.transfer.points import draw_in_bracket, loss_table, vertex

WINDOW = 2.9  # LRs within this factor of the longest horizon's lowest loss: the valley
ALPHAS = np.arange(0.05, 3.0001, 0.05)  # the shared exponent's grid
MIN_HORIZONS = 3
DRAWS = 200


@dataclass
class LossCurves:
    best_lr: float
    alpha: float
    interval: list[float] | None  # None: undefined in half the bootstrap draws or more
    at_window_edge: bool  # the extrapolated minimum is the lowest or highest LR fitted
    lrs: list[float]  # the LRs fitted
    predicted_loss: list[float]  # their extrapolated losses at the target
    held_out_error: float | None  # None with fewer than four horizons


def joint_table(
    per_horizon: list[tuple[list, list, list]],
) -> tuple[np.ndarray, np.ndarray] | None:
    """(LRs tested at every horizon, (n_horizon, n_lr, n_seed) final losses; inf where a
    lane failed): the LRs and seeds common to every horizon (refinement adds LRs per
    horizon; those are left out)."""
    tables = [loss_table(*rows) for rows in per_horizon if rows[0]]
    if len(tables) < len(per_horizon):
        return None
    common = set(tables[0][0].tolist())
    for grid, _ in tables[1:]:
        common &= set(grid.tolist())
    n_seeds = min(t.shape[1] for _, t in tables)
    if not common or n_seeds == 0:
        return None
    lrs = np.array(sorted(common))
    stack = [t[np.searchsorted(grid, lrs), :n_seeds] for grid, t in tables]
    return lrs, np.stack(stack)


def _fit(lrs: np.ndarray, mean: np.ndarray, horizons: np.ndarray, target: float):
    """(best LR, alpha, at window edge, LRs fitted, their losses at target) or None.
    `mean`: (n_horizon, n_lr) mean final losses, inf where a lane failed. An LR is fitted on
    the horizons where it trained (finite), if the longest is one of them and one more is;
    alpha is set by the LRs with three or more (with two an LR's floor and amplitude fit
    them exactly, whatever alpha is)."""
    longest = mean[-1]
    if not np.isfinite(longest).any():
        return None
    i = int(np.argmin(longest))
    near = (lrs >= lrs[i] / WINDOW) & (lrs <= lrs[i] * WINDOW)
    near[max(i - 1, 0) : i + 2] = True  # a coarse grid: its neighbours either side at least
    seen = np.isfinite(mean)
    near &= seen[-1] & (seen.sum(axis=0) >= 2)
    if near.sum() < 3 or not (seen[:, near].sum(axis=0) >= 3).any():
        return None
    x, y, w = lrs[near], np.where(seen, mean, 0.0)[:, near], seen[:, near].astype(float)
    n = w.sum(axis=0)
    # per alpha (first axis) and LR, least squares of y on u = T^-alpha over its own horizons
    u = horizons[None, :, None] ** -ALPHAS[:, None, None] * w
    mu, my = u.sum(axis=1) / n, (w * y).sum(axis=0) / n
    du, dy = (u - mu[:, None]) * w, (y - my) * w
    amplitude = (du * dy).sum(axis=1) / (du**2).sum(axis=1)
    floor = my - amplitude * mu
    rss = (((floor[:, None] + amplitude[:, None] * u - y) * w) ** 2).sum(axis=(1, 2))
    k = int(np.argmin(rss))
    at_target = floor[k] + amplitude[k] * target ** -ALPHAS[k]
    j, lr, _ = vertex(x, at_target)
    return lr, float(ALPHAS[k]), j in (0, len(x) - 1), x, at_target


def loss_curves(
    per_horizon: list[tuple[list, list, list]],
    horizons: list[int],
    target: float,
    measured_longest: float | None = None,
    seed: int = 0,
) -> LossCurves | None:
    """The best LR at `target` from the swept horizons' lanes (`per_horizon`, ascending with
    `horizons`; each (learning rates, seeds, final losses)). `measured_longest`: the best LR
    measured at the longest swept horizon (points.py), for the held-out check. None with
    fewer than `MIN_HORIZONS` horizons or where no valley can be fitted."""
    joint = joint_table(per_horizon) if len(horizons) >= MIN_HORIZONS else None
    if joint is None:
        return None
    lrs, table = joint
    h = np.asarray(horizons, float)
    found = _fit(lrs, table.mean(axis=2), h, target)
    if found is None:
        return None
    best, alpha, edge, fitted, predicted = found
    rng = np.random.default_rng(seed)
    n_seeds = table.shape[2]
    draws = []
    for _ in range(DRAWS):
        got = _fit(lrs, table[:, :, rng.integers(0, n_seeds, n_seeds)].mean(axis=2), h, target)
        if got is not None:  # and where in its bracket the minimum may be, as points.py draws
            lr, fitted = got[0], got[3]
            below, above = fitted[fitted < lr], fitted[fitted > lr]
            low = below.max() if below.size else lr
            high = above.min() if above.size else lr
            draws.append(math.log(draw_in_bracket(rng, lr, low, high)))
    interval = None
    if 2 * len(draws) > DRAWS:
        lo, hi = np.percentile(draws, [2.5, 97.5])
        interval = [math.exp(lo), math.exp(hi)]
    held_out = None
    if len(horizons) > MIN_HORIZONS and measured_longest and target > horizons[-1]:
        short = _fit(lrs, table[:-1].mean(axis=2), h[:-1], h[-1])
        if short is not None:
            miss = math.log2(short[0] / measured_longest)
            held_out = abs(miss) * math.log(target / h[-1]) / math.log(h[-1] / h[-2])
    return LossCurves(best, alpha, interval, edge, fitted.tolist(), predicted.tolist(),
                      held_out)  # fmt: skip
