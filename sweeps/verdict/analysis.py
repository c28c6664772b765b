"""The Goldilocks verdict: a status per lane, a zone per group, and a winner.

Pure functions over `LaneResult`s. The rules, in order (documented in the README):

- **diverged**: the trainer froze the lane (non-finite loss, or above `diverge_factor` x its
  initial loss for `patience` steps), or it ended above that threshold.
- **unstable**: it crossed the threshold and came back, or its training loss climbed more than
  `UNSTABLE_RISE` x its initial loss above the lowest value it had reached.
- **stagnated**: its training loss fell by less than `stagnation_tolerance` of the initial loss.
- **converged**: everything else.

A group's LRs are compared by their validation loss averaged over seeds. The **zone** is the
contiguous run of LRs around the best whose loss achieves at least (1 - `zone_tolerance`) of
the best LR's improvement over the initial validation loss, with no diverged seed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sweeps.core.optimizers import OPTIMIZERS
from sweeps.verdict.results import LaneResult

UNSTABLE_RISE = 0.25
STATUS_ORDER = ("converged", "stagnated", "unstable", "diverged")  # worst last


def classify_lane(
    r: LaneResult, *, diverge_factor: float = 4.0, stagnation_tolerance: float = 0.05
) -> str:
    init = r.initial_train_loss
    trained = [v for v in r.train_loss[1:]]
    final = trained[-1] if trained else math.nan
    if r.diverged_at_step is not None or not math.isfinite(final) or final > diverge_factor * init:
        return "diverged"
    if r.spiked or _climbed(trained, UNSTABLE_RISE * init):
        return "unstable"
    if init - final < stagnation_tolerance * init:
        return "stagnated"
    return "converged"


def _climbed(losses: list[float], margin: float) -> bool:
    lowest = math.inf
    for v in losses:
        if v > lowest + margin:
            return True
        lowest = min(lowest, v)
    return False


def ended_above_since(r: LaneResult, diverge_factor: float) -> int | None:
    """For a lane that ended above the threshold without being frozen: where that began."""
    threshold = diverge_factor * r.initial_train_loss
    since = None
    for step, v in zip(r.step[1:], r.train_loss[1:], strict=True):
        since = (since if since is not None else step) if not v <= threshold else None
    return since


@dataclass
class GroupVerdict:
    optimizer: str
    schedule: str
    loss: str
    optimizer_args: dict[str, float]
    schedule_args: dict[str, float]
    lr_free: bool
    best_lr: float | None
    zone: dict[str, float] | None
    max_stable_lr: float | None
    min_diverged_lr: float | None
    edge: str | None
    best_val_loss: float | None
    best_val_metric: float | None
    seed_spread: dict[str, float] | None
    status_counts: dict[str, int]
    curve: dict[str, list[Any]] = field(default_factory=dict)
    rank: int | None = None


def analyze(
    results: list[LaneResult],
    *,
    loss: str,
    diverge_factor: float = 4.0,
    stagnation_tolerance: float = 0.05,
    zone_tolerance: float = 0.2,
) -> tuple[list[GroupVerdict], LaneResult | None]:
    """Classify lanes (in place), build one verdict per group, rank groups, pick the winner."""
    for r in results:
        r.status = classify_lane(
            r, diverge_factor=diverge_factor, stagnation_tolerance=stagnation_tolerance
        )
        if r.status == "diverged" and r.diverged_at_step is None:
            r.diverged_at_step = ended_above_since(r, diverge_factor)
    groups: dict[tuple, list[LaneResult]] = defaultdict(list)
    for r in results:
        groups[r.lane.group_key].append(r)
    verdicts = {key: _group_verdict(m, loss, zone_tolerance) for key, m in groups.items()}
    ranked = sorted(
        (key for key, v in verdicts.items() if v.best_val_loss is not None),
        key=lambda key: verdicts[key].best_val_loss,
    )
    for i, key in enumerate(ranked):
        verdicts[key].rank = i + 1
    winner = None
    if ranked:  # optimizers compared each at its own best LR: the best group's best lane
        top = verdicts[ranked[0]]
        at_best = [r for r in groups[ranked[0]] if r.lane.learning_rate == top.best_lr]
        winner = min(at_best, key=lambda r: r.best_val_loss)
    return list(verdicts.values()), winner


def _group_verdict(members: list[LaneResult], loss: str, zone_tolerance: float) -> GroupVerdict:
    lane0 = members[0].lane
    by_lr: dict[float, list[LaneResult]] = defaultdict(list)
    for r in members:
        by_lr[r.lane.learning_rate].append(r)
    lrs = sorted(by_lr)
    diverged = [any(r.status == "diverged" for r in by_lr[lr]) for lr in lrs]
    mean_loss = [_mean([r.best_val_loss for r in by_lr[lr]]) for lr in lrs]
    std_loss = [_std([r.best_val_loss for r in by_lr[lr]]) for lr in lrs]
    worst = [max((r.status for r in by_lr[lr]), key=STATUS_ORDER.index) for lr in lrs]
    candidates = [i for i in range(len(lrs)) if not diverged[i] and math.isfinite(mean_loss[i])]
    best = min(candidates, key=lambda i: mean_loss[i]) if candidates else None
    stable = [lr for lr, d in zip(lrs, diverged, strict=True) if not d]
    diverged_lrs = [lr for lr, d in zip(lrs, diverged, strict=True) if d]
    counts = {s: sum(r.status == s for r in members) for s in STATUS_ORDER}
    verdict = GroupVerdict(
        optimizer=lane0.optimizer,
        schedule=lane0.schedule,
        loss=loss,
        optimizer_args=lane0.optimizer_args,
        schedule_args=lane0.schedule_args,
        lr_free=OPTIMIZERS[lane0.optimizer].lr_free,
        best_lr=None,
        zone=None,
        max_stable_lr=max(stable) if stable else None,
        min_diverged_lr=min(diverged_lrs) if diverged_lrs else None,
        edge=None,
        best_val_loss=None,
        best_val_metric=None,
        seed_spread=None,
        status_counts=counts,
        curve={
            "learning_rate": lrs,
            "val_loss": [_finite_or_none(v) for v in mean_loss],
            "val_loss_std": [_finite_or_none(v) for v in std_loss],
            "status": worst,
        },
    )
    if best is None:
        return verdict
    at_best = by_lr[lrs[best]]
    verdict.best_lr = lrs[best]
    verdict.best_val_loss = mean_loss[best]
    verdict.best_val_metric = _finite_or_none(_mean([r.best_val_metric for r in at_best]))
    if len(at_best) > 1:
        verdict.seed_spread = {
            "seeds": len(at_best),
            "val_loss_std": std_loss[best],
            "val_metric_std": _std([r.best_val_metric for r in at_best]),
        }
    if len(lrs) > 1:
        verdict.edge = "low" if best == 0 else "high" if best == len(lrs) - 1 else None
        initial = _mean([r.initial_val_loss for r in members])
        verdict.zone = _zone(lrs, mean_loss, diverged, best, initial, zone_tolerance)
    return verdict


def _zone(lrs, losses, diverged, best, initial, tolerance) -> dict[str, float] | None:
    gain = initial - losses[best]
    if not gain > 0:
        return None  # nothing improved on the starting point: there is no zone
    bar = losses[best] + tolerance * gain

    def inside(i):
        return not diverged[i] and math.isfinite(losses[i]) and losses[i] <= bar

    lo = hi = best
    while lo > 0 and inside(lo - 1):
        lo -= 1
    while hi < len(lrs) - 1 and inside(hi + 1):
        hi += 1
    return {"low": lrs[lo], "high": lrs[hi]}


def _mean(values: list[float]) -> float:
    arr = np.asarray(values, dtype=float)
    return float(np.mean(arr)) if np.all(np.isfinite(arr)) else math.inf


def _std(values: list[float]) -> float:
    arr = np.asarray(values, dtype=float)
    return float(np.std(arr)) if len(arr) > 1 and np.all(np.isfinite(arr)) else 0.0


def _finite_or_none(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None
