"""The LR range test, pure: Smith's exponential ramp, as fastai and Lightning do it.

Each optimizer trains one population whose lanes are the spec's seeds, with the learning rate
ramped exponentially from `min_lr` to `max_lr` over `steps` steps (the `range_test` schedule,
so min/max are traced numbers and every seed shares one compile). The per-step training loss
is smoothed (EMA, beta 0.98, bias-corrected); the curve stops where the smoothed loss exceeds
`stop_factor` x the best so far. Suggestions:

- `steepest` (Lightning): the LR where the smoothed loss falls fastest, skipping the first 10
  and the last point.
- `valley` (fastai's default): the longest valley of the curve, taken 1/2 way into its
  middle third.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sweeps.core.data import Dataset
from sweeps.core.population import train_population
from sweeps.core.program import Structure, make_hyperparams


@dataclass(frozen=True)
class RangeTestConfig:
    min_lr: float = 1e-8
    max_lr: float = 1.0
    steps: int = 100
    beta: float = 0.98
    stop_factor: float = 4.0
    skip_begin: int = 10
    skip_end: int = 1


def ramp(config: RangeTestConfig) -> np.ndarray:
    i = np.arange(config.steps)
    return config.min_lr * (config.max_lr / config.min_lr) ** (i / max(config.steps - 1, 1))


def smooth(losses: np.ndarray, beta: float) -> np.ndarray:
    """Exponential moving average with bias correction (fastai / Lightning)."""
    out = np.empty(len(losses))
    avg = 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def stop_index(smoothed: np.ndarray, stop_factor: float) -> int | None:
    """The first step whose smoothed loss is non-finite or above stop_factor x the best so far."""
    best = math.inf
    for i, v in enumerate(smoothed):
        if not math.isfinite(v) or (i > 0 and v > stop_factor * best):
            return i
        best = min(best, v)
    return None


def steepest(lrs: np.ndarray, smoothed: np.ndarray, skip_begin: int, skip_end: int) -> float | None:
    segment = smoothed[skip_begin : len(smoothed) - skip_end]
    if len(segment) < 2:
        return None
    return float(lrs[skip_begin + int(np.argmin(np.gradient(segment)))])


def valley(lrs: np.ndarray, smoothed: np.ndarray) -> float | None:
    """fastai's valley: the longest decreasing run (as a subsequence), 1/2 into its middle third."""
    n = len(smoothed)
    if n < 2:
        return None
    longest = [1] * n
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if smoothed[i] < smoothed[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
        if longest[end] < longest[i]:
            end = i
            start = end - longest[end]
    third = (end - start) / 3
    return float(lrs[start + int(third) + int(third / 2)])


def curve(optimizer: str, seed: int, lrs: np.ndarray, losses: np.ndarray, config) -> dict:
    smoothed = smooth(np.where(np.isfinite(losses), losses, np.inf), config.beta)
    stop = stop_index(smoothed, config.stop_factor)
    keep = len(losses) if stop is None else stop
    lr_kept, sm_kept = lrs[:keep], smoothed[:keep]
    return {
        "optimizer": optimizer,
        "seed": seed,
        "learning_rate": lr_kept.tolist(),
        "loss": [float(v) if math.isfinite(v) else None for v in losses[:keep]],
        "smoothed": sm_kept.tolist(),
        "stopped_at": stop,
        "suggestions": {
            "steepest": steepest(lr_kept, sm_kept, config.skip_begin, config.skip_end),
            "valley": valley(lr_kept, sm_kept),
        },
    }


def summary(curves: list[dict]) -> dict:
    """Per optimizer: the geometric mean of each suggestion over seeds."""
    out: dict[str, dict[str, float | None]] = {}
    for c in curves:
        out.setdefault(c["optimizer"], {})
    for opt in out:
        mine = [c for c in curves if c["optimizer"] == opt]
        for kind in ("steepest", "valley"):
            vals = [c["suggestions"][kind] for c in mine if c["suggestions"][kind]]
            out[opt][kind] = float(np.exp(np.mean(np.log(vals)))) if vals else None
    return out


def range_test(
    structure: Structure,
    data: Dataset,
    config: RangeTestConfig,
    optimizer_args: dict[str, float],
    seeds: np.ndarray,
    data_seed: int = 0,
) -> list[dict]:
    """One curve per seed for `structure` (its schedule the range test's, its steps the
    ramp's): the per-step training loss against the ramped LR, smoothed, with suggestions."""
    n = len(seeds)
    hp = make_hyperparams(
        np.full(n, config.max_lr),
        {k: np.full(n, v) for k, v in optimizer_args.items()},
        {"min_lr": np.full(n, config.min_lr), "max_lr": np.full(n, config.max_lr)},
    )
    points = list(train_population(structure, data, hp, seeds, data_seed=data_seed))
    losses = np.concatenate([p.step_losses for p in points[1:]], axis=1)
    lrs = ramp(config)
    return [
        curve(structure.optimizer, int(seed), lrs, losses[i].astype(float), config)
        for i, seed in enumerate(seeds)
    ]
