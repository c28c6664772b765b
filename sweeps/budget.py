"""Budgets checked before anything is created: steps, lane-steps and a trial's memory.

A sweep that cannot finish (10^12 steps) or cannot fit (a 10^10-parameter MLP times 64 lanes)
is refused at `validate` / submit time with the field and the numbers, instead of taking a
running slot for hours or dying with "Out of memory" after Ray and MLflow are up.

The memory estimate is for one trial (one population on one device): every lane's
parameters, gradients and optimizer state stay resident, plus one slice of lanes'
activations for a batch, plus the dataset (it lives on the device). It is an estimate: it
is meant to catch a sweep off by orders of magnitude, not to squeeze the last gigabyte.
"""

from __future__ import annotations

import math
import os

from sweeps.core.data import Dataset
from sweeps.core.lane_width import CANDIDATES
from sweeps.core.optimizers import OPTIMIZERS
from sweeps.errors import SpecError
from sweeps.plan.planner import Planner
from sweeps.settings import Settings
from sweeps.spec import SweepSpec, model_for

BYTES = 4  # float32
ACTIVATION_COPIES = 3  # forward activations kept for the backward pass, and their gradients


def check_budget(spec: SweepSpec, data: Dataset, planner: Planner, s: Settings) -> None:
    """Raise SpecError naming the field when the sweep is over a budget (`s`: the caps, from
    GOLDILOCKS_* settings read at the entry point)."""
    errors = []
    if spec.lane_count() > s.max_lanes:
        errors.append(
            f"search: this sweep has {spec.lane_count():,} lanes, above the cap of "
            f"{s.max_lanes:,} (GOLDILOCKS_MAX_LANES); narrow the grid or use fewer seeds"
        )
    steps = spec.train.steps
    if steps > s.max_steps:
        errors.append(
            f"train.steps: {steps:,} is above the cap of {s.max_steps:,} steps "
            "(GOLDILOCKS_MAX_STEPS)"
        )
    lane_steps = planner.expected_lanes * steps
    if lane_steps > s.max_lane_steps:
        errors.append(
            f"search: {planner.expected_lanes:,} lanes x {steps:,} steps = {lane_steps:,} "
            f"lane-steps, above the cap of {s.max_lane_steps:,} (GOLDILOCKS_MAX_LANE_STEPS); "
            "fewer steps, LRs or seeds"
        )
    if not errors:
        memory = _memory_error(spec, data, planner, s)
        if memory:
            errors.append(memory)
    if errors:
        raise SpecError(errors)


def trial_lanes(spec: SweepSpec, planner: Planner) -> int:
    """Lanes of the largest population: all their state is resident at once."""
    if planner.adaptive:
        return len(spec.train.seeds)
    return max((len(p.lanes) for p in planner.populations), default=0)


def estimate_trial_bytes(
    spec: SweepSpec, data: Dataset, planner: Planner, s: Settings
) -> dict[str, float]:
    """Bytes one trial needs, by part."""
    _, fns = model_for(spec, data)
    lanes = trial_lanes(spec, planner)
    state_arrays = max(OPTIMIZERS[name].state_arrays for name in spec.search.optimizer_names)
    # parameters, their gradients, the optimizer's state: per lane, every lane resident
    state = BYTES * fns.num_params * (2 + state_arrays) * lanes
    batch = data.n_train if spec.train.batch_size == "full" else spec.train.batch_size
    # the widest slice the trial may run (on a CPU: the widest width the tuner may choose)
    cpu = s.cpu_lane_width or max(CANDIDATES)
    width = min(lanes, s.gpu_lane_width if spec.resources.accelerator != "cpu" else cpu)
    # where each layer's units are computed again: every pixel of an image, every position of
    # a token sequence
    pixels = data.image_shape[0] * data.image_shape[1] if data.image_shape else 1
    if data.x_train.dtype.kind in "iu" and data.x_train.ndim == 2:
        pixels = data.x_train.shape[1]
    # one value per output unit of each layer (a conv kernel's outputs at every pixel)
    per_example = sum(
        shape[-1] * (pixels if len(shape) == 4 or data.image_shape is None else 1)
        for shape in fns.param_shapes
        if len(shape) >= 2
    )
    activations = BYTES * ACTIVATION_COPIES * batch * width * per_example
    arrays = data.x_train.nbytes + data.y_train.nbytes + data.x_val.nbytes + data.y_val.nbytes
    return {
        "params": float(fns.num_params),
        "lanes": float(lanes),
        "state": float(state),
        "activations": float(activations),
        "data": float(arrays),
        "total": float(state + activations + arrays),
    }


def trial_memory_limit(spec: SweepSpec, planner: Planner, s: Settings) -> int | None:
    """What one trial may use: GOLDILOCKS_TRIAL_MEMORY_BYTES, else (CPU trials) this machine's
    memory shared by the trials that run at once; None when unknown (GPU trials)."""
    if s.trial_memory_bytes is not None:
        return s.trial_memory_bytes
    if spec.resources.gpus_per_trial:
        return None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    concurrent = max(1, min(spec.resources.max_concurrent_trials, planner.expected_trials or 1))
    return total // concurrent


def _memory_error(spec: SweepSpec, data: Dataset, planner: Planner, s: Settings) -> str | None:
    limit = trial_memory_limit(spec, planner, s)
    if limit is None:
        return None
    est = estimate_trial_bytes(spec, data, planner, s)
    if est["total"] <= limit:
        return None
    return (
        f"model: one trial needs about {_gb(est['total'])} ({est['lanes']:.0f} lanes x "
        f"{est['params']:.3g} parameters: {_gb(est['state'])} of parameters, gradients and "
        f"optimizer state, {_gb(est['activations'])} of activations, {_gb(est['data'])} of "
        f"data), above the {_gb(limit)} a trial has here (GOLDILOCKS_TRIAL_MEMORY_BYTES); "
        "use a smaller model or fewer lanes per trial (resources.max_lanes_per_trial)"
    )


def _gb(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{math.ceil(n / 1e3)} kB"
