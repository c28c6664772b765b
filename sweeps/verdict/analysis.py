"""The Goldilocks verdict: a status per lane, edges and a zone per group, and a winner.

Pure functions over `LaneResult`s. The rules, with their numbers, are written out for users in
docs/verdict.md; keep the two in step. A lane's status is decided in two passes: what the lane
did on its own, then where it ended against its group (same optimizer, schedule and arguments;
other LRs and seeds).

"Blew up" (a spike): its training loss crossed `diverge_factor` x its initial loss (at an eval
point, or between them: the trainer's `spiked`), its validation loss crossed `diverge_factor` x
its initial validation loss, or its training loss climbed more than `UNSTABLE_RISE` x its
initial loss above the lowest value it had reached.

On its own:
- **diverged**: the trainer froze it (non-finite loss, or above the threshold for `patience`
  steps), it ended above the threshold, or it *collapsed*: it blew up and ended no better than
  it started (training loss less than `COLLAPSE_GAIN` below its initial loss, validation loss
  never `COLLAPSE_GAIN` below its start, or the validation metric within `CHANCE_MARGIN` of its
  untrained value);
- **unstable**: it blew up and still ended clearly better than it started;
- **stagnated**: its training loss fell by less than `stagnation_tolerance` of its initial loss.

Against its group. The best LR is the lowest validation loss averaged over seeds, among LRs
with no diverged seed. A lane's *progress* is how far its best validation loss went from its
own start towards the group's best: (start - its best) / (start - group's best).
- at an LR above the best, a lane that ended no better than it started is **diverged** too
  (collapsed without a spike: a learning rate too hot to train, not too slow);
- **converged**: progress of at least 1 - `NEAR_BEST` (it got within 10 % of the way);
- otherwise, above the best LR: **too_high** (it trained, without a spike, but ended far
  from the best: too hot to get there);
- at or below the best LR: **too_slow** when its progress is at least `SLOW_PROGRESS` (it
  improved substantially but had not got there in the steps given), else **stagnated** (it
  barely moved).
Unstable and diverged lanes keep their status whatever their LR.

- **pruned** (search.prune): stopped at a rung (`pruned_at_step`) without having diverged:
  below the best LR there, and far behind it (sweeps/core/prune.py). Its history ends at the
  rung, so it is never the best LR, never inside the zone and never counted stable (the walk
  up to `max_stable_lr` stops at it); it does not move the divergence edge either.

Edges: `min_diverged_lr` is the first LR above the best with a diverged seed; `max_stable_lr`
is the largest LR reached going up from the best through LRs with no unstable and no diverged
seed (so it never names an unstable or diverged LR, and max_stable_lr < min_diverged_lr);
`first_unstable_lr` is where that walk stopped at an unstable seed. LRs above the divergence
edge that ended finite anyway are `erratic_above_edge`, listed rather than allowed to move it.
The **zone** is the contiguous run of LRs around the best whose averaged validation loss is
within `zone_tolerance` of the best improvement over the initial loss, with every seed
converged.

A diverged lane records where it first blew up (`blow_up_step`) unless the trainer froze it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sweeps.core.losses import LOSSES
from sweeps.core.optimizers import OPTIMIZERS
from sweeps.plan.refine import bracket
from sweeps.verdict.results import LaneResult

UNSTABLE_RISE = 0.25  # a climb this far (x initial loss) above the lane's low is a blow-up
COLLAPSE_GAIN = 0.10  # ended less than 10 % below its initial training loss: no better
CHANCE_MARGIN = 0.02  # validation metric within 0.02 of its untrained value: chance level
NEAR_BEST = 0.10  # converged: within 10 % of the way from its start to the group's best
SLOW_PROGRESS = 0.25  # too slow rather than stagnated: at least a quarter of the way there
# Worst last: an LR's status on the curve is its worst seed's.
STATUS_ORDER = (
    "converged", "too_slow", "stagnated", "pruned", "too_high", "unstable", "diverged"
)  # fmt: skip
NOT_STABLE = ("unstable", "diverged")  # statuses that no LR called stable may have
STOPS_WALK = (*NOT_STABLE, "pruned")  # nor a pruned one: it never trained to the end


# --------------------------------------------------------------------------- one lane
def _final_train(r: LaneResult) -> float:
    trained = r.train_loss[1:]
    return trained[-1] if trained else math.nan


def _over(values: list[float], threshold: float) -> list[bool]:
    return [not (v <= threshold) for v in values]  # NaN and inf count as over


def blew_up(r: LaneResult, diverge_factor: float) -> bool:
    """A spike: crossed the divergence threshold (training or validation loss), or the
    training loss climbed far above its own low."""
    trained = [v for v in r.train_loss[1:] if math.isfinite(v)]
    crossed = any(v > diverge_factor * r.initial_train_loss for v in trained)
    v0 = r.initial_val_loss
    val = [v for v in r.val_loss[1:] if math.isfinite(v)]
    val_crossed = math.isfinite(v0) and v0 > 0 and any(v > diverge_factor * v0 for v in val)
    climbed = _climbed(trained, UNSTABLE_RISE * r.initial_train_loss) is not None
    return r.spiked or crossed or val_crossed or climbed


def blow_up_step(r: LaneResult, diverge_factor: float) -> int | None:
    """Where a lane first blew up: the first eval point whose training or validation loss was
    above the divergence threshold (or not finite); failing that, where its training loss
    first climbed `UNSTABLE_RISE` x its initial loss above its low; failing that (a lane that
    never trained, or spiked only between eval points), its first eval point after step 0."""
    steps = r.step[1:]
    if not steps:
        return None
    train_over = _over(r.train_loss[1:], diverge_factor * r.initial_train_loss)
    v0 = r.initial_val_loss
    val_over = (
        _over(r.val_loss[1:], diverge_factor * v0)
        if math.isfinite(v0) and v0 > 0
        else [False] * len(steps)
    )
    for step, t, v in zip(steps, train_over, val_over, strict=False):
        if t or v:
            return int(step)
    i = _climbed(r.train_loss[1:], UNSTABLE_RISE * r.initial_train_loss)
    return int(steps[i]) if i is not None else int(steps[0])


def no_better_than_start(r: LaneResult, higher_is_better: bool = True) -> bool:
    """Training loss not meaningfully below the initial loss, nor the validation loss ever
    below its start, or the metric at chance level."""
    final, init = _final_train(r), r.initial_train_loss
    if not (math.isfinite(final) and math.isfinite(init)):
        return True
    if init - final < COLLAPSE_GAIN * abs(init):
        return True
    v0 = r.initial_val_loss
    if math.isfinite(v0) and v0 - r.best_val_loss < COLLAPSE_GAIN * abs(v0):
        return True  # its validation loss never got meaningfully below the start
    metric = [v for v in r.val_metric if math.isfinite(v)]
    if len(r.val_metric) >= 2 and math.isfinite(r.val_metric[0]) and metric:
        gain = metric[-1] - r.val_metric[0]
        return (gain if higher_is_better else -gain) < CHANCE_MARGIN
    return False


def classify_lane(
    r: LaneResult,
    *,
    diverge_factor: float = 4.0,
    stagnation_tolerance: float = 0.05,
    higher_is_better: bool = True,
) -> str:
    """What the lane did on its own: diverged, unstable, stagnated (barely moved) or converged
    (`analyze` then refines converged and stagnated against the lane's group)."""
    init, final = r.initial_train_loss, _final_train(r)
    if r.diverged_at_step is not None or not math.isfinite(final) or final > diverge_factor * init:
        return "diverged"
    if blew_up(r, diverge_factor):
        return "diverged" if no_better_than_start(r, higher_is_better) else "unstable"
    if init - final < stagnation_tolerance * init:
        return "stagnated"
    return "converged"


def _climbed(losses: list[float], margin: float) -> int | None:
    """The index of the first finite value more than `margin` above the lowest before it."""
    lowest = math.inf
    for i, v in enumerate(losses):
        if not math.isfinite(v):
            continue
        if v > lowest + margin:
            return i
        lowest = min(lowest, v)
    return None


# --------------------------------------------------------------------------- a group
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
    erratic_above_edge: list[float] = field(default_factory=list)
    first_unstable_lr: float | None = None  # where the walk up from the best met a spike
    curve: dict[str, list[Any]] = field(default_factory=dict)
    rank: int | None = None
    # How precise the answer is (refinement rounds, sweeps/plan/refine.py): min diverged /
    # max stable LR, the tested LRs either side of the best, and the rounds that trained it.
    # the divergence edge located to: the largest LR below min_diverged_lr where no seed
    # diverged (it may have spiked: then it is above max_stable_lr), and min_diverged over it
    max_undiverged_lr: float | None = None
    edge_ratio: float | None = None
    best_lr_bracket: list[float] | None = None
    rounds: int = 1
    batch_size: int | None = None  # transfer.batch_size: the group's own; None: train's
    model_width: int | None = None  # transfer.width: the group's model argument; None: spec's


def analyze(
    results: list[LaneResult],
    *,
    loss: str,
    diverge_factor: float = 4.0,
    stagnation_tolerance: float = 0.05,
    zone_tolerance: float = 0.05,
    higher_is_better: bool | None = None,
) -> tuple[list[GroupVerdict], LaneResult | None]:
    """Classify lanes (in place), build one verdict per group, rank groups, pick the winner.
    `higher_is_better` is the metric's direction (by default the built-in loss's)."""
    higher = higher_is_better
    if higher is None:
        higher = LOSSES[loss].higher_is_better if loss in LOSSES else True
    for r in results:
        r.status = classify_lane(
            r,
            diverge_factor=diverge_factor,
            stagnation_tolerance=stagnation_tolerance,
            higher_is_better=higher,
        )
        if r.pruned_at_step is not None and r.status != "diverged":
            r.status = "pruned"
    groups: dict[tuple, list[LaneResult]] = defaultdict(list)
    for r in results:
        groups[r.lane.group_key].append(r)
    verdicts = {key: _group_verdict(m, loss, zone_tolerance, higher) for key, m in groups.items()}
    for key, v in verdicts.items():
        _precision(v, groups[key])
    for r in results:
        if r.status == "diverged" and r.diverged_at_step is None:
            r.diverged_at_step = blow_up_step(r, diverge_factor)  # not frozen: where it blew up
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


def _precision(v: GroupVerdict, members: list[LaneResult]) -> None:
    """The precision fields of a group's verdict (additive: nothing else reads them)."""
    if v.min_diverged_lr is not None:
        below = [lr for lr in v.curve.get("learning_rate", []) if lr < v.min_diverged_lr]
        if below:
            v.max_undiverged_lr = float(max(below))
            v.edge_ratio = v.min_diverged_lr / v.max_undiverged_lr
    v.best_lr_bracket = bracket(v.curve.get("learning_rate", []), v.best_lr)
    v.rounds = max((getattr(r.lane, "round", 1) for r in members), default=1)


def _best_index(lrs, by_lr, mean_loss, *, converged_only: bool = False) -> int | None:
    """The LR with the lowest seed-averaged validation loss: among LRs with no diverged seed
    (first pass), or among LRs whose every seed converged (the verdict's best LR)."""

    def eligible(lr):
        statuses = {r.status for r in by_lr[lr]}
        if converged_only:
            return statuses == {"converged"}
        return not statuses & {"diverged", "pruned"}

    candidates = [i for i, lr in enumerate(lrs) if math.isfinite(mean_loss[i]) and eligible(lr)]
    return min(candidates, key=lambda i: mean_loss[i]) if candidates else None


def _refine(members, by_lr, lrs, best, higher) -> None:
    """The second pass: each lane against its group's best LR (see the module docstring)."""
    best_lr = lrs[best]
    group_best = min(r.best_val_loss for r in by_lr[best_lr])
    group_start = _mean([r.initial_val_loss for r in members])
    for r in members:
        lr = r.lane.learning_rate
        if r.status in NOT_STABLE or r.status == "pruned":
            continue
        if lr > best_lr and no_better_than_start(r, higher):
            r.status = "diverged"  # collapsed without a spike: too hot to train at all
            continue
        p = progress(r, group_best, group_start)
        if p is not None and p >= 1 - NEAR_BEST:
            continue  # near the best: as it was on its own (converged, or barely moved)
        p = -math.inf if p is None else p  # the best never improved on this lane's start
        if lr > best_lr:
            r.status = "too_high"
        elif r.status == "converged" and p >= SLOW_PROGRESS:
            r.status = "too_slow"
        else:
            r.status = "stagnated"


def progress(r: LaneResult, group_best: float, group_start: float = math.nan) -> float | None:
    """How far the lane's best validation loss went from its own start towards the group's
    best (1: all the way, 0: not at all); None when the best did not improve on that start.
    A lane without a finite start is measured from the group's mean start."""
    start = r.initial_val_loss if math.isfinite(r.initial_val_loss) else group_start
    gain = start - group_best
    if not (math.isfinite(gain) and gain > 0):
        return None
    mine = start - r.best_val_loss
    return mine / gain if math.isfinite(mine) else -math.inf


def _group_verdict(
    members: list[LaneResult], loss: str, zone_tolerance: float, higher: bool = True
) -> GroupVerdict:
    lane0 = members[0].lane
    by_lr: dict[float, list[LaneResult]] = defaultdict(list)
    for r in members:
        by_lr[r.lane.learning_rate].append(r)
    lrs = sorted(by_lr)
    mean_loss = [_mean([r.best_val_loss for r in by_lr[lr]]) for lr in lrs]
    best = _best_index(lrs, by_lr, mean_loss)
    if best is not None and len(lrs) > 1:
        _refine(members, by_lr, lrs, best, higher)
    # The verdict's best LR trained cleanly on every seed; failing that (nothing converged),
    # the best LR with no diverged seed, and then there is no zone.
    best = _best_index(lrs, by_lr, mean_loss, converged_only=True)
    if best is None:
        best = _best_index(lrs, by_lr, mean_loss)
    std_loss = [_std([r.best_val_loss for r in by_lr[lr]]) for lr in lrs]
    worst = [max((r.status for r in by_lr[lr]), key=STATUS_ORDER.index) for lr in lrs]
    diverged = [w == "diverged" for w in worst]
    counts = {s: sum(r.status == s for r in members) for s in STATUS_ORDER}
    verdict = GroupVerdict(
        optimizer=lane0.optimizer,
        schedule=lane0.schedule,
        loss=loss,
        optimizer_args=lane0.optimizer_args,
        schedule_args=lane0.schedule_args,
        lr_free=OPTIMIZERS[lane0.optimizer].lr_free,
        batch_size=getattr(lane0, "batch_size", None),
        model_width=getattr(lane0, "model_width", None),
        best_lr=None,
        zone=None,
        max_stable_lr=None,
        min_diverged_lr=None,
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
        diverged_lrs = [lr for lr, d in zip(lrs, diverged, strict=True) if d]
        verdict.min_diverged_lr = min(diverged_lrs) if diverged_lrs else None
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
    # The stability edge: the first diverged LR above the best. The largest stable LR: going
    # up from the best, the last LR before the first with an unstable or diverged seed.
    edge_i = next((i for i in range(best + 1, len(lrs)) if diverged[i]), None)
    stop = next((i for i in range(best, len(lrs)) if worst[i] in STOPS_WALK), len(lrs))
    verdict.max_stable_lr = lrs[stop - 1] if stop > best else None
    if stop < len(lrs) and worst[stop] == "unstable":
        verdict.first_unstable_lr = lrs[stop]
    if edge_i is not None:
        verdict.min_diverged_lr = lrs[edge_i]
        verdict.erratic_above_edge = [
            lrs[i] for i in range(edge_i + 1, len(lrs)) if not diverged[i]
        ]
    if len(lrs) > 1:
        verdict.edge = "low" if best == 0 else "high" if best == len(lrs) - 1 else None
        initial = _mean([r.initial_val_loss for r in members])
        verdict.zone = _zone(lrs, mean_loss, worst, best, initial, zone_tolerance)
    return verdict


def _zone(lrs, losses, worst, best, initial, tolerance) -> dict[str, float] | None:
    gain = initial - losses[best]
    if not gain > 0 or worst[best] != "converged":
        return None  # nothing improved on the start, or nothing trained cleanly: no zone
    bar = losses[best] + tolerance * gain

    def inside(i):
        return worst[i] == "converged" and math.isfinite(losses[i]) and losses[i] <= bar

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


def analyze_for(spec, results: list[LaneResult]) -> tuple[list[GroupVerdict], LaneResult | None]:
    """`analyze` with a sweep spec's loss, metric direction and thresholds."""
    return analyze(
        results,
        loss=spec.loss_name,
        higher_is_better=spec.higher_is_better,
        diverge_factor=spec.early_stopping.diverge_factor,
        stagnation_tolerance=spec.analysis.stagnation_tolerance,
        zone_tolerance=spec.analysis.zone_tolerance,
    )
