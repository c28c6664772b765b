"""Lanes and populations: what a sweep trains.

A *lane* is one training run: one learning rate, seed and set of numeric optimizer/schedule
arguments. Lanes that share a compiled structure (optimizer family and schedule family; model,
loss, batch size and steps are fixed per sweep) form a *population*, trained together in one
XLA program. A population holds at most `resources.max_lanes_per_trial` lanes.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Point:
    """One point of the search space; the planner trains it once per seed."""

    optimizer: str
    schedule: str
    learning_rate: float
    optimizer_args: dict[str, float] = field(hash=False)
    schedule_args: dict[str, float] = field(hash=False)
    batch_size: int | None = None  # transfer.batch_size: this point's own; None: train's
    model_width: int | None = None  # transfer.width: its model argument's value; None: the spec's


@dataclass(frozen=True)
class Lane:
    index: int
    optimizer: str
    schedule: str
    learning_rate: float
    seed: int
    optimizer_args: dict[str, float] = field(hash=False)
    schedule_args: dict[str, float] = field(hash=False)
    round: int = 1  # the refinement round that made it (search.refine); 1: the spec's grid
    batch_size: int | None = None  # transfer.batch_size: its own batch size; None: train's
    model_width: int | None = None  # transfer.width: its model argument; None: the spec's

    @property
    def group_key(self) -> tuple:
        """Lanes that differ only in learning rate and seed form one Goldilocks group."""
        return (
            self.optimizer,
            self.schedule,
            tuple(sorted(self.optimizer_args.items())),
            tuple(sorted(self.schedule_args.items())),
            self.batch_size,
            self.model_width,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Lane:
        return cls(
            int(d["index"]), d["optimizer"], d["schedule"], float(d["learning_rate"]),
            int(d["seed"]), dict(d["optimizer_args"]), dict(d["schedule_args"]),
            int(d.get("round", 1)), d.get("batch_size"), d.get("model_width"),
        )  # fmt: skip


@dataclass(frozen=True)
class Population:
    id: str
    optimizer: str
    schedule: str
    lanes: tuple[Lane, ...]
    # The slice width to train at, set for a later refinement round: the width its
    # structure's first population trained at, so its compiled programs are reused.
    width: int | None = None
    batch_size: int | None = None  # transfer.batch_size: its own (a structure); None: train's
    model_width: int | None = None  # transfer.width: its model argument (a structure)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "optimizer": self.optimizer,
            "schedule": self.schedule,
            "lanes": [lane.to_json() for lane in self.lanes],
            "width": self.width,
            "batch_size": self.batch_size,
            "model_width": self.model_width,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Population:
        lanes = tuple(Lane.from_json(lane) for lane in d["lanes"])
        return cls(
            d["id"], d["optimizer"], d["schedule"], lanes, d.get("width"), d.get("batch_size"),
            d.get("model_width"),
        )  # fmt: skip


def at_horizons(points: list[Point], horizons: list[int], key: str) -> list[Point]:
    """transfer.steps: every point once per horizon, its length among its schedule arguments
    under `key` (points that carry one already, from a refinement round, stay as they are).
    The horizons of a point share its population: one program trains them all."""
    out: list[Point] = []
    for p in points:
        if key in p.schedule_args or not horizons:
            out.append(p)
            continue
        for h in horizons:
            args = {**p.schedule_args, key: float(h)}
            out.append(
                Point(p.optimizer, p.schedule, p.learning_rate, dict(p.optimizer_args), args)
            )
    return out


def at_structures(points: list[Point], field_name: str, values: list[int]) -> list[Point]:
    """transfer.batch_size / transfer.width: every point once per value of `field_name`
    (`batch_size`, `model_width`; each value its own structure and population); points that
    carry one already (a refinement round's) stay as they are."""
    return [
        p if getattr(p, field_name) is not None else dataclasses.replace(p, **{field_name: v})
        for p in points
        for v in ([None] if getattr(p, field_name) is not None else values)
    ]


def lane_steps_of(lane: Lane, steps: int, key: str) -> int:
    """The steps a lane trains: its own horizon (transfer.steps), else the sweep's."""
    return int(lane.schedule_args.get(key, steps))


def lanes_of(
    points: list[Point], seeds: list[int], first_index: int = 0, round: int = 1
) -> list[Lane]:
    """Every point once per seed, numbered from `first_index` (lane index = position)."""
    lanes: list[Lane] = []
    for p in points:
        for seed in seeds:
            index = first_index + len(lanes)
            lanes.append(
                Lane(index, p.optimizer, p.schedule, p.learning_rate, seed,
                     dict(p.optimizer_args), dict(p.schedule_args), round, p.batch_size,
                     p.model_width)
            )  # fmt: skip
    return lanes


def group_populations(lanes: list[Lane], cap: int, first: int = 0) -> list[Population]:
    """Group lanes by compiled structure and chunk each group to the per-trial lane cap.

    Balanced chunks: 300 lanes at cap 256 become 150 + 150 (sizes differ by at most one:
    10 lanes at cap 3 are 3+3+2+2, not 3+3+3+1). Ids number on from `first`.
    """
    by_structure: dict[tuple, list[Lane]] = defaultdict(list)
    for lane in lanes:
        key = (lane.optimizer, lane.schedule, lane.batch_size, lane.model_width)
        by_structure[key].append(lane)
    populations = []
    for (opt, sched, batch, model_width), members in by_structure.items():
        n_chunks = -(-len(members) // cap)
        base, extra = divmod(len(members), n_chunks)
        start = 0
        for i in range(n_chunks):
            size = base + (i < extra)
            pid = f"p{first + len(populations):03d}-{opt}-{sched}"
            pid += f"-b{batch}" if batch is not None else ""
            pid += f"-w{model_width}" if model_width is not None else ""
            chunk = tuple(members[start : start + size])
            populations.append(
                Population(pid, opt, sched, chunk, batch_size=batch, model_width=model_width)
            )
            start += size
    return populations
