"""One trial = one population: turn a planned population into trainer inputs and train it.

Shared by the inline executor and the Ray Tune trainable, so both train exactly the same way.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator

import numpy as np

from sweeps.core.data import Dataset
from sweeps.core.population import (
    EvalPoint,
    LaneHyperparams,
    LaneState,
    Structure,
    Timing,
    lane_choice,
    make_hyperparams,
    train_population,
)
from sweeps.plan.lanes import Population
from sweeps.settings import get_settings
from sweeps.spec import SweepSpec


def structure_for(spec: SweepSpec, pop: Population, data: Dataset) -> Structure:
    t = spec.train
    return Structure(
        model=spec.model,
        loss=spec.loss_key,
        metrics=spec.metrics.import_ if spec.metrics else None,
        optimizer=pop.optimizer,
        schedule=pop.schedule,
        batch_size=data.n_train if t.batch_size == "full" else t.batch_size,
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


def run_trial(
    spec: SweepSpec,
    pop: Population,
    data: Dataset,
    *,
    timing: Timing | None = None,
    start: list[LaneState] | None = None,
    start_step: int = 0,
    threads: int | None = None,
) -> Iterator[EvalPoint]:
    """Train one population, `threads` slices at a time (None: this process's cores); yields
    its eval points (see `train_population`). A later refinement round's population trains at
    the width its planner set (its structure's compiled width)."""
    return train_population(
        structure_for(spec, pop, data),
        data,
        hyperparams_for(pop),
        seeds_for(pop),
        data_seed=spec.train.data_seed,
        start=start,
        start_step=start_step,
        timing=timing,
        threads=threads,
        width=pop.width,
    )


def trial_threads(spec: SweepSpec, trials: int | None = None) -> int:
    """Slices a Ray CPU trial trains at once (sweeps/core/population.py): its whole CPUs, and
    where its sweep has fewer trials than it may run at once (`trials`, known for a fixed
    plan) the CPUs of the slots it leaves empty, up to this machine's cores (a one-population
    sweep on two slots of one CPU trains on two threads); GOLDILOCKS_CPU_THREADS overrides.
    The driver measures lane widths and compiles ahead for this count; an inline sweep trains
    with its own process's cores (`slice_threads`)."""
    setting = get_settings().cpu_threads
    if setting:
        return setting
    own = max(1, math.floor(spec.resources.cpus_per_trial))
    if not trials:
        return own
    slots = spec.resources.max_concurrent_trials
    boosted = own * max(1, slots // min(slots, trials))
    return max(own, min(boosted, os.cpu_count() or 1))


def measure_lane_widths(
    spec: SweepSpec,
    data: Dataset,
    populations: list[Population],
    tell: Callable[[str], None] = lambda what: None,
    threads: int | None = None,
) -> float:
    """Measure, here and now, the CPU lane width of every planned population not measured on
    this host before (sweeps/core/lane_width.py), for trials training `threads` slices at once
    (None: as this process would): the driver does it before any trial starts, so the timings
    are quiet and the trials read them. Returns the seconds it took; `tell` hears what is
    measured while it is."""
    spent = 0.0
    for pop in populations:
        structure = structure_for(spec, pop, data)
        n = len(pop.lanes)
        if lane_choice(structure, data, n, threads=threads)["source"] == "default":
            tell(f"measuring the lane width for {pop.optimizer}-{pop.schedule} on this CPU")
        choice = lane_choice(structure, data, n, measure=True, threads=threads)
        spent += choice.get("tune_s", 0.0)
    return spent
