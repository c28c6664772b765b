"""Learning-rate schedules as pure jnp functions of *traced* arguments.

optax's schedule factories bake their numbers into Python closures, so every new peak LR or
warmup fraction would be a new compile. Here a schedule is `fn(step, total_steps, peak_lr,
args) -> lr` where `peak_lr` and every entry of `args` may be a traced per-lane array: one
compiled population serves any mix of numbers, the run's length `total_steps` included
(a lane's own horizon, `HORIZON`, under transfer.steps). Each formula follows its optax counterpart
(tests check them against optax), with "fractions of the run" instead of step counts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sweeps.core.lazy import LazyModule

if TYPE_CHECKING:
    import jax.numpy as jnp

    ScheduleFn = Callable[[jnp.ndarray, int, jnp.ndarray, Mapping[str, jnp.ndarray]], jnp.ndarray]
else:  # the names and defaults are read without JAX (spec validation); the functions import it
    jnp = LazyModule("jax.numpy")


@dataclass(frozen=True)
class Schedule:
    name: str
    fn: ScheduleFn
    defaults: dict[str, float] = field(default_factory=dict)
    doc: str = ""


def _constant(step, total, peak, args):
    return peak * jnp.ones_like(step, dtype=jnp.float32)


def _cosine_factor(progress, final_fraction):
    progress = jnp.clip(progress, 0.0, 1.0)
    return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))


def _cosine(step, total, peak, args):
    # optax.cosine_decay_schedule(peak, decay_steps=total, alpha=final_fraction)
    return peak * _cosine_factor(step / total, args["final_fraction"])


def _warmup_steps(total, args):
    return jnp.round(args["warmup_fraction"] * total)


def _warmup_cosine(step, total, peak, args):
    # optax.warmup_cosine_decay_schedule(0, peak, warmup_steps, decay_steps=total, end_value)
    warmup = _warmup_steps(total, args)
    warm = peak * step / jnp.maximum(warmup, 1.0)
    decay_progress = (step - warmup) / jnp.maximum(total - warmup, 1.0)
    cos = peak * _cosine_factor(decay_progress, args["final_fraction"])
    return jnp.where(step < warmup, warm, cos)


def _linear_warmup(step, total, peak, args):
    # optax.join_schedules([linear_schedule(0, peak, warmup), constant_schedule(peak)], [warmup])
    warmup = _warmup_steps(total, args)
    return jnp.where(step < warmup, peak * step / jnp.maximum(warmup, 1.0), peak)


def _wsd(step, total, peak, args):
    # warmup-stable-decay: optax.join_schedules([linear_schedule(0, peak, warmup),
    # constant_schedule(peak), linear_schedule(peak, final_fraction x peak, decay)])
    warmup = _warmup_steps(total, args)
    decay = jnp.round(args["decay_fraction"] * total)
    start = total - decay  # the decay's first step
    warm = peak * step / jnp.maximum(warmup, 1.0)
    progress = jnp.clip((step - start) / jnp.maximum(decay, 1.0), 0.0, 1.0)
    cool = peak * (1.0 - (1.0 - args["final_fraction"]) * progress)
    return jnp.where(step < warmup, warm, jnp.where(step < start, peak, cool))


def _exponential(step, total, peak, args):
    # optax.exponential_decay(peak, transition_steps=total, decay_rate): decay_rate over the run
    return peak * args["decay_rate"] ** (step / total)


def _step(step, total, peak, args):
    # optax.piecewise_constant_schedule with a drop of `gamma` every `step_fraction` of the run
    period = jnp.maximum(jnp.round(args["step_fraction"] * total), 1.0)
    return peak * args["gamma"] ** jnp.floor(step / period)


def _onecycle(step, total, peak, args):
    # optax.cosine_onecycle_schedule(total, peak, pct_start, div_factor, final_div_factor)
    pct_start, div, final_div = args["pct_start"], args["div_factor"], args["final_div_factor"]
    start = peak / div
    end = start / final_div
    up = jnp.round(pct_start * total)

    def anneal(a, b, progress):
        return b + (a - b) * 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.clip(progress, 0.0, 1.0)))

    rising = anneal(start, peak, step / jnp.maximum(up, 1.0))
    falling = anneal(peak, end, (step - up) / jnp.maximum(total - up, 1.0))
    return jnp.where(step < up, rising, falling)


def _range_test(step, total, peak, args):
    # The LR range test's exponential ramp from min_lr to max_lr (peak_lr is ignored).
    lo, hi = args["min_lr"], args["max_lr"]
    return lo * (hi / lo) ** (step / jnp.maximum(total - 1, 1))


SCHEDULES: dict[str, Schedule] = {
    s.name: s
    for s in [
        Schedule("constant", _constant, {}, "the peak LR throughout"),
        Schedule("cosine", _cosine, {"final_fraction": 0.0}, "cosine decay to final_fraction×LR"),
        Schedule(
            "warmup_cosine",
            _warmup_cosine,
            {"warmup_fraction": 0.1, "final_fraction": 0.0},
            "linear warmup from 0, then cosine decay",
        ),
        Schedule("exponential", _exponential, {"decay_rate": 0.01}, "×decay_rate over the run"),
        Schedule("step", _step, {"step_fraction": 0.33, "gamma": 0.1}, "×gamma every fraction"),
        Schedule(
            "onecycle",
            _onecycle,
            {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4},
            "cosine one-cycle (Smith)",
        ),
        Schedule("linear_warmup", _linear_warmup, {"warmup_fraction": 0.1}, "warmup, then flat"),
        Schedule(
            "wsd",
            _wsd,
            {"warmup_fraction": 0.05, "decay_fraction": 0.2, "final_fraction": 0.0},
            "warmup-stable-decay: linear warmup, flat, linear decay over the last fraction",
        ),
    ]
}

# Not offered in specs: used by `goldilocks lr-find`.
RANGE_TEST = Schedule("range_test", _range_test, {"min_lr": 1e-8, "max_lr": 1.0})

SCHEDULE_NAMES = tuple(SCHEDULES)

# A lane's own training length, carried among its schedule arguments (transfer.steps): the
# planner sets it, the trainer decays each lane's schedule to it and stops the lane there.
HORIZON = "horizon"


def get_schedule(name: str) -> Schedule:
    if name == RANGE_TEST.name:
        return RANGE_TEST
    return SCHEDULES[name]
