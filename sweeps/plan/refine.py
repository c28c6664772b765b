"""Refinement rounds: where a group's answer is still coarse, the LRs to train next.

Round 1 is the spec's grid. After each round the planner reads each group's verdict (its best
LR, its max stable and min diverged LR) and asks `next_lrs` for new LRs:

- the **edge**: the gap between max stable and min diverged LR, until their ratio is at most
  `ratio`;
- the **best LR**: the gaps to its tested neighbours on both sides, until each is within
  `ratio` (the best is then bracketed: `best_lr_bracket`);
- **past the range**: one grid step below the lowest LR when the best is the lowest (or
  nothing trained), one above the highest when the best is the highest or nothing diverged
  above it, at most `extend` times each way.

A gap is cut in log space into as few equal parts as let the rounds left reach `ratio`
(a gap of 10x, target 1.1, three rounds left: thirds, then thirds of those ...): lanes train
side by side in one program, rounds one after another, so a round spends a few lanes to save
rounds. Pure functions: no JAX, no spec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SAME = 1e-9  # two LRs closer than this in log space are the same LR


@dataclass
class Extended:
    """How many grid steps a group has been extended past its range, each way."""

    low: int = 0
    high: int = 0


def parts_for(gap: float, target: float, rounds_left: int) -> int:
    """Equal parts to cut a log-space `gap` into, so `rounds_left` rounds reach `target`."""
    if gap <= target * (1 + 1e-9):
        return 1
    need = gap / target
    parts = max(2, math.ceil(need ** (1.0 / max(1, rounds_left)) - 1e-9))
    return min(parts, math.ceil(need - 1e-9))  # never finer than the target itself


def cut(lo: float, hi: float, parts: int) -> list[float]:
    """The `parts - 1` LRs that cut [lo, hi] into equal parts in log space."""
    w = math.log(hi / lo)
    return [lo * math.exp(w * k / parts) for k in range(1, parts)]


def next_lrs(
    tested: list[float],
    best_lr: float | None,
    max_stable_lr: float | None,
    min_diverged_lr: float | None,
    *,
    ratio: float,
    rounds_left: int,
    step: float,
    extend: int,
    extended: Extended,
) -> list[float]:
    """The new LRs for one group (sorted; none already tested), updating `extended`.

    `tested` are the group's LRs so far, `step` the grid's ratio between neighbours (the size
    of an extension), `rounds_left` the refinement rounds still allowed, this one included."""
    if not tested or rounds_left < 1:
        return []
    lrs = sorted(tested)
    target = math.log(ratio)
    new: list[float] = []
    gaps: set[tuple[float, float]] = set()
    if best_lr is None:  # nothing trained cleanly: look below
        if extended.low < extend:
            extended.low += 1
            new.append(lrs[0] / step)
        return _fresh(new, lrs)
    i = min(range(len(lrs)), key=lambda k: abs(math.log(lrs[k] / best_lr)))
    if max_stable_lr is not None and min_diverged_lr is not None:
        gaps.add((max_stable_lr, min_diverged_lr))
    if i > 0:
        gaps.add((lrs[i - 1], lrs[i]))
    elif extended.low < extend:
        extended.low += 1
        new.append(lrs[0] / step)
    if i < len(lrs) - 1:
        gaps.add((lrs[i], lrs[i + 1]))
    top = i == len(lrs) - 1
    if (top or min_diverged_lr is None) and extended.high < extend:
        extended.high += 1
        new.append(lrs[-1] * step)
    for lo, hi in sorted(gaps):
        new += cut(lo, hi, parts_for(math.log(hi / lo), target, rounds_left))
    return _fresh(new, lrs)


def _fresh(candidates: list[float], tested: list[float]) -> list[float]:
    """The candidates not already tested (nor repeated), sorted."""
    out: list[float] = []
    for lr in sorted(candidates):
        if all(abs(math.log(lr / t)) > SAME for t in [*tested, *out]):
            out.append(lr)
    return out


def bracket(tested: list[float], lr: float | None) -> list[float] | None:
    """[the tested LR below `lr`, the one above] (`lr` itself at a range's end)."""
    if lr is None or not tested:
        return None
    lrs = sorted(tested)
    i = min(range(len(lrs)), key=lambda k: abs(math.log(lrs[k] / lr)))
    return [lrs[max(0, i - 1)], lrs[min(len(lrs) - 1, i + 1)]]


def dense_count(low: float, high: float, resolution: float) -> int:
    """LRs of a log grid over [low, high] whose neighbours are at most `resolution` apart."""
    if high <= low or resolution <= 1.0:
        return 1
    return math.ceil(math.log(high / low) / math.log(resolution) - 1e-9) + 1
