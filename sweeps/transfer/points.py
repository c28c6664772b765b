"""One swept value's best LR: where it is, how precisely, and bootstrap draws of it.

Pure numpy over plain numbers: the learning rates, seeds and *final* validation losses of the
lanes trained at one value of an axis (at a horizon T, the loss after T steps: what a user who
trains for T steps gets, not the best over steps). The best LR is the lowest loss averaged over
seeds among LRs where no seed failed; where it has tested neighbours on both sides, the vertex
of a parabola through the three in log LR (the loss is about quadratic there) places it
between grid points. Its bracket is the tested neighbours (after refinement rounds: within the
refinement ratio).

Bootstrap draws (for the fit's intervals): the seeds resampled with replacement, the vertex found
again, then drawn uniformly in log LR over the middle half of the bracket around it (where the
true minimum may be, given what was tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

RISING = 0.05  # a final loss above its run's low by 5 % of the gain made: still rising


@dataclass
class BestLR:
    best_lr: float
    grid_best_lr: float  # the tested LR with the lowest mean loss
    bracket: list[float]  # the tested neighbours either side (the LR itself at an edge)
    method: str  # "parabola" (vertex through the minimum) or "grid"
    final_val_loss: float  # the mean over seeds at the grid best
    at_range_edge: bool  # the best is the lowest or the highest LR tested
    draws: np.ndarray = field(repr=False)


def loss_table(lrs, seeds, losses) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct LRs, (n_lr, n_seed) losses; inf where a lane failed or is missing)."""
    grid = np.array(sorted(set(float(v) for v in lrs)))
    seed_ids = sorted(set(seeds))
    table = np.full((len(grid), len(seed_ids)), np.inf)
    for lr, seed, loss in zip(lrs, seeds, losses, strict=True):
        v = float(loss)
        i = int(np.searchsorted(grid, float(lr)))
        table[i, seed_ids.index(seed)] = v if math.isfinite(v) else np.inf
    return grid, table


def vertex(grid: np.ndarray, curve: np.ndarray) -> tuple[int, float, str]:
    """(grid index of the minimum, best LR, method) of a mean loss curve."""
    i = int(np.argmin(curve))
    if 0 < i < len(grid) - 1 and np.all(np.isfinite(curve[i - 1 : i + 2])):
        x = np.log(grid[i - 1 : i + 2])
        a, b, _ = np.polyfit(x, curve[i - 1 : i + 2], 2)
        if a > 0:
            v = float(np.clip(-b / (2 * a), x[0], x[2]))
            return i, math.exp(v), "parabola"
    return i, float(grid[i]), "grid"


def draw_in_bracket(rng: np.random.Generator, lr: float, low: float, high: float) -> float:
    """One draw, uniform in log LR, over the middle half of the bracket [low, high] around
    `lr` (where the true minimum may be, given what was tested)."""
    lo = 0.5 * math.log(min(low, lr) / lr)
    hi = 0.5 * math.log(max(high, lr) / lr)
    return lr * math.exp(rng.uniform(lo, hi))


def best_lr(lrs, seeds, losses, *, draws: int = 400, seed: int = 0) -> BestLR | None:
    """The best LR of one swept value (None when no LR trained without failing)."""
    grid, table = loss_table(lrs, seeds, losses)
    curve = table.mean(axis=1)  # inf where any seed failed
    if not np.isfinite(curve).any():
        return None
    i, best, method = vertex(grid, curve)
    bracket = [float(grid[max(i - 1, 0)]), float(grid[min(i + 1, len(grid) - 1)])]
    rng = np.random.default_rng(seed)
    out = np.empty(draws)
    n_seeds = table.shape[1]
    for b in range(draws):
        cols = rng.integers(0, n_seeds, n_seeds)
        resampled = table[:, cols].mean(axis=1)
        _, v, _ = vertex(grid, resampled) if np.isfinite(resampled).any() else (0, best, "")
        out[b] = draw_in_bracket(rng, v, *bracket)
    return BestLR(best, float(grid[i]), bracket, method, float(curve[i]),
                  i in (0, len(grid) - 1), out)  # fmt: skip


def still_rising(val_loss: list[float]) -> bool:
    """A run whose validation loss ended above its own low by more than `RISING` of the gain
    it had made: overfitting had set in (or it was going unstable)."""
    finite = [v for v in val_loss if math.isfinite(v)]
    if len(finite) < 3:
        return False
    start, low, end = finite[0], min(finite[1:]), finite[-1]
    gain = start - low
    return gain > 0 and end - low > RISING * gain
