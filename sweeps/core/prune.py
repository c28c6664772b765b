"""Pruning inside a population (search.prune): which lanes stop at a rung, and the repacking
that makes the compute really fall.

At each rung (a fraction of the steps, rounded to an eval point) a lane stops when
- it has diverged: the trainer froze it, so nothing about it can change any more; or
- its learning rate can no longer matter: within its group (same optimizer, schedule and
  arguments), it sits below the LR of the group's best lane at the rung (lowest validation
  loss averaged over seeds) and its validation loss has improved on its start by less than
  `IMPROVEMENT_FRACTION` of what the best improved by then.
The second rule is decided per learning rate over its seeds (means over the seeds): one
seed of an LR is never pruned while another trains on. LRs above the best that have not
diverged keep training whatever their loss: the stability edge must stay truthful.

Pure numpy over host arrays (`decide`, `rung_steps`) and pytree gathers (`repack`); the
trainer (sweeps/core/population.py) calls them between chunks.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

IMPROVEMENT_FRACTION = 0.25  # below the best: pruned when it improved < 25 % of the best's gain
LIVE = -1  # `pruned_at` of a lane still training


def rung_steps(fractions: list[float], steps: int, eval_every: int) -> list[int]:
    """The eval steps the rungs fall on: each fraction of `steps` rounded to the nearest eval
    point, strictly inside the run (a rung at the end would save nothing)."""
    out = set()
    for f in fractions:
        step = int(round(f * steps / eval_every)) * eval_every
        if 0 < step < steps:
            out.add(step)
    return sorted(out)


def decide(
    learning_rate: np.ndarray,
    group: np.ndarray,
    start_val: np.ndarray,
    val: np.ndarray,
    diverged: np.ndarray,
    live: np.ndarray,
    fraction: float = IMPROVEMENT_FRACTION,
) -> np.ndarray:
    """Which live lanes stop now (bool over the lanes). `group` numbers each lane's group,
    `start_val` is each lane's validation loss at step 0, `val` at the rung, `diverged` marks
    lanes the trainer froze; `live` the lanes still training."""
    lr = np.asarray(learning_rate, float)
    stop = np.asarray(live, bool) & np.asarray(diverged, bool)
    with np.errstate(all="ignore"):
        for g in np.unique(group):
            members = np.flatnonzero((group == g) & live)
            units = {}  # LR -> its lanes (its seeds)
            for i in members:
                units.setdefault(float(lr[i]), []).append(i)
            mean = {}
            for u, lanes in units.items():
                v, s = val[lanes], start_val[lanes]
                clean = np.isfinite(v).all() and np.isfinite(s).all() and not diverged[lanes].any()
                mean[u] = (float(np.mean(s)), float(np.mean(v))) if clean else None
            finite = {u: m for u, m in mean.items() if m is not None}
            if not finite:
                continue
            best = min(finite, key=lambda u: finite[u][1])
            best_gain = finite[best][0] - finite[best][1]
            if not best_gain > 0:
                continue  # nothing learned yet: no yardstick to call a lane hopeless
            for u, lanes in units.items():
                if u >= best:
                    continue  # at or above the best: kept (the edge stays truthful)
                m = mean[u]  # None: a seed non-finite or diverged, no better than its start
                gain = m[0] - m[1] if m is not None else -np.inf
                if gain < fraction * best_gain:
                    stop[lanes] = True
    return stop


@dataclass
class PruneState:
    """What a resumed population needs to prune as it did: each lane's rung (`LIVE`: still
    training) and its step-0 validation loss (the yardstick of later rungs)."""

    pruned_at: np.ndarray
    start_val: np.ndarray

    @property
    def live(self) -> np.ndarray:
        return np.flatnonzero(self.pruned_at == LIVE)

    def to_json(self) -> dict:
        return {"pruned_at": self.pruned_at.tolist(), "start_val": self.start_val.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> PruneState:
        return cls(np.asarray(d["pruned_at"], np.int64), np.asarray(d["start_val"], float))


def pad_tree(tree, start: int, stop: int, width: int):
    """Lanes [start, stop) padded to `width` by repeating the first lane (discarded later)."""

    def take(a):
        part = a[start:stop]
        pad = width - part.shape[0]
        return jnp.concatenate([part, jnp.repeat(part[:1], pad, axis=0)]) if pad else part

    return jax.tree.map(take, tree)


def exact_bounds(n: int, width: int) -> list[tuple[int, int]]:
    """`n` lanes in slices of exactly `width` (the last padded): the same compiled program."""
    return [(lo, min(lo + width, n)) for lo in range(0, n, width)]


def take_host(tree, index: np.ndarray):
    """The lanes `index` of a pytree, gathered on the host (numpy): no eager device op, so no
    small XLA program compiled per shape at a rung (about 3 s on a 2-core CPU per sweep)."""
    return jax.tree.map(lambda a: np.asarray(a)[index], tree)


def slices_host(tree, bounds: list[tuple[int, int]], width: int) -> list:
    """A host pytree cut at `bounds` into device slices of `width` (the last padded by
    repeating its first lane, as `pad_tree`)."""

    def take(a, lo, hi):
        part = a[lo:hi]
        pad = width - part.shape[0]
        return np.concatenate([part, np.repeat(part[:1], pad, axis=0)]) if pad else part

    return [jax.device_put(jax.tree.map(lambda a, lo=lo, hi=hi: take(a, lo, hi), tree))
            for lo, hi in bounds]  # fmt: skip


def repack(states: list, bounds, keep: np.ndarray, width: int):
    """The kept lanes of `states` (positions into the packed order), in fewer slices of the
    same `width`: (new states, new bounds). Through the host: a rung is rare, a compile is not
    cheap."""
    real = [
        jax.tree.map(lambda a, k=hi - lo: np.asarray(a)[:k], s)
        for s, (lo, hi) in zip(states, bounds, strict=True)
    ]
    whole = jax.tree.map(lambda *parts: np.concatenate(parts), *real)
    new_bounds = exact_bounds(len(keep), width)
    return slices_host(take_host(whole, keep), new_bounds, width), new_bounds


@dataclass
class Layout:
    """Where each lane trains: `live` (original lane indices) in packed order, cut by
    `bounds` into slices of `width`, `threads` of them side by side; `n` lanes in all."""

    n: int
    width: int
    bounds: list[tuple[int, int]]
    live: np.ndarray
    threads: int


def apply_rung(point, prune, hyperparams, groups, states, hp_slices, layout, threads):
    """Stop the lanes the rule picks at this rung (recorded in `prune`) and repack the rest
    into fewer slices of the same width: (states, hyperparameter slices, layout). With no
    lane left, no slice: the later chunks train nothing."""
    live_mask = prune.pruned_at == LIVE
    diverged = point.diverged_at >= 0
    lr = np.asarray(hyperparams.learning_rate)
    stop = decide(lr, groups, prune.start_val, point.val_loss, diverged, live_mask)
    prune.pruned_at[stop] = point.step
    keep_lanes = np.flatnonzero(prune.pruned_at == LIVE)
    if len(keep_lanes) == len(layout.live):
        return states, hp_slices, layout
    if len(keep_lanes) == 0:
        return [], [], Layout(layout.n, layout.width, [], keep_lanes, 0)
    position = {int(lane): i for i, lane in enumerate(layout.live)}
    keep = np.array([position[int(lane)] for lane in keep_lanes], np.int64)
    states, bounds = repack(states, layout.bounds, keep, layout.width)
    hp_slices = slices_host(take_host(hyperparams, keep_lanes), bounds, layout.width)
    busy = min(threads, len(bounds))
    return states, hp_slices, Layout(layout.n, layout.width, bounds, keep_lanes, busy)
