"""Planning: expand a spec into lanes, and group lanes into populations.

A *lane* is one training run: one learning rate, seed and set of numeric optimizer/schedule
arguments. Lanes that share a compiled structure (optimizer family and schedule family; model,
loss, batch size and steps are fixed per sweep) form a *population*, trained together in one
XLA program. A population holds at most `resources.max_lanes_per_trial` lanes.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from sweeps.optimizers import OPTIMIZERS
from sweeps.schedules import SCHEDULES
from sweeps.spec import SweepSpec


@dataclass(frozen=True)
class Lane:
    index: int
    optimizer: str
    schedule: str
    learning_rate: float
    seed: int
    optimizer_args: dict[str, float] = field(hash=False)
    schedule_args: dict[str, float] = field(hash=False)

    @property
    def group_key(self) -> tuple:
        """Lanes that differ only in learning rate and seed form one Goldilocks group."""
        return (
            self.optimizer,
            self.schedule,
            tuple(sorted(self.optimizer_args.items())),
            tuple(sorted(self.schedule_args.items())),
        )


@dataclass(frozen=True)
class Population:
    id: str
    optimizer: str
    schedule: str
    lanes: tuple[Lane, ...]


def learning_rates(spec: SweepSpec) -> list[float]:
    r = spec.search.learning_rate
    if r.num == 1:
        return [r.min]
    grid = (
        np.geomspace(r.min, r.max, r.num) if r.scale == "log" else np.linspace(r.min, r.max, r.num)
    )
    return [float(v) for v in grid]


def _arg_grid(given: dict, defaults: dict[str, float]) -> list[dict[str, float]]:
    """Every combination of the searched (list-valued) arguments, on top of the defaults."""
    fixed = {k: float(v) for k, v in given.items() if k in defaults and not isinstance(v, list)}
    searched = {k: v for k, v in given.items() if k in defaults and isinstance(v, list)}
    base = {**defaults, **fixed}
    return [
        {**base, **dict(zip(searched, combo, strict=True))}
        for combo in itertools.product(*searched.values())
    ]


def expand_lanes(spec: SweepSpec) -> list[Lane]:
    """All lanes of the sweep, in a stable order (lane index = position)."""
    s = spec.search
    # random and tpe both start from random points; tpe refines them under Ray Tune
    points = _grid_points(spec) if s.method == "grid" else _random_points(spec)
    lanes = []
    for opt, sched, lr, opt_args, sched_args in points:
        for seed in spec.train.seeds:
            lanes.append(Lane(len(lanes), opt, sched, lr, seed, opt_args, sched_args))
    return lanes


def _grid_points(spec: SweepSpec):
    s = spec.search
    lrs = learning_rates(spec)
    for opt_name in s.optimizer:
        opt = OPTIMIZERS[opt_name]
        for sched_name in s.schedule:
            for opt_args in _arg_grid(s.optimizer_args, opt.defaults):
                for sched_args in _arg_grid(s.schedule_args, SCHEDULES[sched_name].defaults):
                    for lr in [opt.default_lr] if opt.lr_free else lrs:
                        yield opt_name, sched_name, lr, opt_args, sched_args


def _random_points(spec: SweepSpec):
    s = spec.search
    r = s.learning_rate
    rng = np.random.default_rng(s.seed)
    for _ in range(s.num_samples):
        opt_name = str(rng.choice(s.optimizer))
        sched_name = str(rng.choice(s.schedule))
        opt = OPTIMIZERS[opt_name]
        if opt.lr_free:
            lr = opt.default_lr
        elif r.scale == "log":
            lr = float(np.exp(rng.uniform(np.log(r.min), np.log(r.max))))
        else:
            lr = float(rng.uniform(r.min, r.max))
        opt_args = _pick(rng, s.optimizer_args, opt.defaults)
        sched_args = _pick(rng, s.schedule_args, SCHEDULES[sched_name].defaults)
        yield opt_name, sched_name, lr, opt_args, sched_args


def _pick(rng: np.random.Generator, given: dict, defaults: dict[str, float]) -> dict[str, float]:
    out = dict(defaults)
    for k, v in given.items():
        if k in defaults:
            out[k] = float(rng.choice(v)) if isinstance(v, list) else float(v)
    return out


def plan_populations(spec: SweepSpec, lanes: list[Lane] | None = None) -> list[Population]:
    """Group lanes by compiled structure and chunk each group to the per-trial lane cap."""
    lanes = expand_lanes(spec) if lanes is None else lanes
    by_structure: dict[tuple[str, str], list[Lane]] = defaultdict(list)
    for lane in lanes:
        by_structure[(lane.optimizer, lane.schedule)].append(lane)
    cap = spec.resources.max_lanes_per_trial
    populations = []
    for (opt, sched), members in by_structure.items():
        # Balanced chunks: 300 lanes at cap 256 become 150 + 150 (sizes differ by at most one:
        # 10 lanes at cap 3 are 3+3+2+2, not 3+3+3+1).
        n_chunks = -(-len(members) // cap)
        base, extra = divmod(len(members), n_chunks)
        start = 0
        for i in range(n_chunks):
            size = base + (i < extra)
            pid = f"p{len(populations):03d}-{opt}-{sched}"
            populations.append(Population(pid, opt, sched, tuple(members[start : start + size])))
            start += size
    return populations
