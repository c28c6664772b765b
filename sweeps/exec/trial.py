"""One trial = one population: turn a planned population into trainer inputs and train it.

Shared by the inline executor and the Ray Tune trainable, so both train exactly the same way.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator

import numpy as np

from sweeps.core import lane_policy
from sweeps.core.data import Dataset
from sweeps.core.lane_width import LanePolicy
from sweeps.core.population import EvalPoint, Timing, train_population
from sweeps.core.program import LaneHyperparams, LaneState, Structure, make_hyperparams
from sweeps.core.prune import PruneState, rung_steps
from sweeps.plan.lanes import Population
from sweeps.spec import SweepSpec


def structure_for(spec: SweepSpec, pop: Population, data: Dataset) -> Structure:
    t = spec.train
    model = spec.model
    if pop.model_width is not None:  # transfer.width: this population's model argument
        model = spec.transfer.model_at(spec.model, pop.model_width)
    return Structure(
        model=model,
        loss=spec.loss_key,
        metrics=spec.metrics.import_ if spec.metrics else None,
        optimizer=pop.optimizer,
        schedule=pop.schedule,
        batch_size=pop.batch_size or (data.n_train if t.batch_size == "full" else t.batch_size),
        steps=t.steps,
        eval_every=t.eval_every,
        diverge_factor=spec.early_stopping.diverge_factor,
        patience=spec.early_stopping.patience,
    )


def hyperparams_for(pop: Population) -> LaneHyperparams:
    lanes = pop.lanes
    return make_hyperparams(
        [lane.learning_rate for lane in lanes],
        {k: [lane.optimizer_args[k] for lane in lanes] for k in lanes[0].optimizer_args},
        {k: [lane.schedule_args[k] for lane in lanes] for k in lanes[0].schedule_args},
    )


def seeds_for(pop: Population) -> np.ndarray:
    return np.array([lane.seed for lane in pop.lanes])


def groups_for(pop: Population) -> np.ndarray:
    """A number per lane, the same for lanes of one Goldilocks group (`Lane.group_key`): what
    pruning decides within."""
    numbers: dict[tuple, int] = {}
    return np.array([numbers.setdefault(lane.group_key, len(numbers)) for lane in pop.lanes])


def run_trial(
    spec: SweepSpec,
    pop: Population,
    data: Dataset,
    *,
    timing: Timing | None = None,
    start: list[LaneState] | None = None,
    start_step: int = 0,
    width: int | None = None,
    threads: int | None = None,
    pruned: PruneState | None = None,
) -> Iterator[EvalPoint]:
    """Train one population at slice width `width` (decided by the driver: `decide_widths`),
    `threads` slices at a time (None: this process's cores); yields its eval points (see
    `train_population`). A later refinement round's population trains at exactly the width
    its planner set (its structure's compiled width: no recompile). With `search.prune`, lanes
    stop at its rungs within their groups (sweeps/core/prune.py); `pruned` is what a
    checkpoint kept of that (the `prune` of the point it resumes from)."""
    structure = structure_for(spec, pop, data)
    prune = spec.search.prune
    rungs = rung_steps(prune.at, structure.steps, structure.eval_every) if prune else None
    return train_population(
        structure,
        data,
        hyperparams_for(pop),
        seeds_for(pop),
        data_seed=spec.train.data_seed,
        start=start,
        start_step=start_step,
        timing=timing,
        width=pop.width or width,
        exact=pop.width is not None,
        threads=threads,
        rungs=rungs,
        groups=groups_for(pop) if rungs else None,
        pruned=pruned,
    )


def trial_threads(spec: SweepSpec, trials: int | None = None, setting: int | None = None) -> int:
    """Slices a Ray CPU trial trains at once (sweeps/core/population.py): its whole CPUs, and
    where its sweep has fewer trials than it may run at once (`trials`, known for a fixed
    plan) the CPUs of the slots it leaves empty, up to this machine's cores (a one-population
    sweep on two slots of one CPU trains on two threads); `setting` (GOLDILOCKS_CPU_THREADS)
    overrides.
    The driver measures lane widths and compiles ahead for this count; an inline sweep trains
    with its own process's cores (`slice_threads`)."""
    if setting:
        return setting
    own = max(1, math.floor(spec.resources.cpus_per_trial))
    if not trials:
        return own
    slots = spec.resources.max_concurrent_trials
    boosted = own * max(1, slots // min(slots, trials))
    return max(own, min(boosted, os.cpu_count() or 1))


def decide_widths(
    spec: SweepSpec,
    data: Dataset,
    populations: list[Population],
    policy: LanePolicy,
    *,
    threads: int | None = None,
    measure: bool = True,
    tell: Callable[[str], None] = lambda what: None,
) -> tuple[dict[str, dict], float]:
    """The slice width of every population, decided once (sweeps/core/lane_policy.py), for
    trials training `threads` slices at once: ({population id: the choice and why}, seconds
    spent measuring). `measure`: the trials run on this machine's CPU, so what is measured
    here holds for them (the driver, before any trial starts: quiet timings). Where a
    structure's populations train enough lane-steps to pay for it; `tell` hears what is
    measured while it is."""
    lane_steps: dict[Structure, int] = {}
    for pop in populations:
        structure = structure_for(spec, pop, data)
        lane_steps[structure] = lane_steps.get(structure, 0) + len(pop.lanes) * spec.train.steps
    record, spent = {}, 0.0
    for pop in populations:
        structure = structure_for(spec, pop, data)
        n = len(pop.lanes)
        steps = sum(v for k, v in lane_steps.items() if _same_compute(k, structure))
        ask = dict(threads=threads, lane_steps=steps)
        known = lane_policy.choose(policy, structure, data, n, **ask)
        if measure and known["source"] == "default" and steps >= policy.min_lane_steps:
            tell(f"measuring the lane width for {pop.optimizer}-{pop.schedule} on this CPU")
        choice = lane_policy.choose(policy, structure, data, n, **ask, measure=measure)
        record[pop.id] = choice
        spent += choice.get("tune_s", 0.0)
    return record, spent


def _same_compute(a: Structure, b: Structure) -> bool:
    """Two structures whose width figures are the same (sweeps/core/lane_policy.structure_id
    leaves the optimizer, schedule and steps out)."""
    keep = ("model", "loss", "metrics", "batch_size", "eval_every")
    return all(getattr(a, k) == getattr(b, k) for k in keep)


class WidthBook:
    """The width each population trains at, decided once and recorded: measured up front for
    a fixed plan (`decide_widths`), decided from what is known for populations an adaptive
    searcher makes later (no measuring mid-sweep). The report is written from this record."""

    def __init__(self, spec: SweepSpec, data: Dataset, policy: LanePolicy, threads: int | None):
        self.spec, self.data, self.policy, self.threads = spec, data, policy, threads
        self.record: dict[str, dict] = {}
        self.tune_s = 0.0

    def decide(self, populations: list[Population], *, measure: bool, tell=lambda what: None):
        record, spent = decide_widths(
            self.spec, self.data, populations, self.policy, threads=self.threads,
            measure=measure, tell=tell,
        )  # fmt: skip
        self.record.update(record)
        self.tune_s += spent

    def width(self, pop: Population) -> int:
        if pop.id not in self.record:
            self.decide([pop], measure=False)
        return int(self.record[pop.id]["width"])

    def widths(self) -> dict[str, int]:
        return {pid: int(choice["width"]) for pid, choice in self.record.items()}
