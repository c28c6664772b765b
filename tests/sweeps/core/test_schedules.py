"""Our traced schedules against optax's own schedule functions, at every step."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sweeps.core.schedules import RANGE_TEST, SCHEDULES

TOTAL, PEAK = 200, 0.3


def _ours(name: str, **args) -> np.ndarray:
    schedule = SCHEDULES[name]
    values = {k: jnp.float32(v) for k, v in {**schedule.defaults, **args}.items()}
    steps = jnp.arange(TOTAL, dtype=jnp.float32)
    return np.asarray(schedule.fn(steps, TOTAL, jnp.float32(PEAK), values))


def _optax(schedule) -> np.ndarray:
    return np.array([float(schedule(i)) for i in range(TOTAL)])


REFERENCES = [
    ("constant", {}, optax.constant_schedule(PEAK)),
    ("cosine", {"final_fraction": 0.1}, optax.cosine_decay_schedule(PEAK, TOTAL, alpha=0.1)),
    (
        "warmup_cosine",
        {"warmup_fraction": 0.1, "final_fraction": 0.0},
        optax.warmup_cosine_decay_schedule(0.0, PEAK, 20, TOTAL, end_value=0.0),
    ),
    ("exponential", {"decay_rate": 0.01}, optax.exponential_decay(PEAK, TOTAL, 0.01)),
    (
        "step",
        {"step_fraction": 0.25, "gamma": 0.1},
        optax.piecewise_constant_schedule(PEAK, {50: 0.1, 100: 0.1, 150: 0.1}),
    ),
    (
        "onecycle",
        {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4},
        optax.cosine_onecycle_schedule(TOTAL, PEAK, 0.3, 25.0, 1e4),
    ),
    (
        "linear_warmup",
        {"warmup_fraction": 0.2},
        optax.join_schedules(
            [optax.linear_schedule(0.0, PEAK, 40), optax.constant_schedule(PEAK)], [40]
        ),
    ),
    (
        "wsd",
        {"warmup_fraction": 0.1, "decay_fraction": 0.25, "final_fraction": 0.1},
        optax.join_schedules(
            [
                optax.linear_schedule(0.0, PEAK, 20),
                optax.constant_schedule(PEAK),
                optax.linear_schedule(PEAK, 0.1 * PEAK, 50),
            ],
            [20, 150],
        ),
    ),
]


@pytest.mark.parametrize(("name", "args", "reference"), REFERENCES, ids=[r[0] for r in REFERENCES])
def test_schedule_matches_optax(name, args, reference):
    np.testing.assert_allclose(_ours(name, **args), _optax(reference), rtol=1e-5, atol=1e-7)


def test_every_registered_schedule_has_a_reference():
    assert {r[0] for r in REFERENCES} == set(SCHEDULES)


def test_range_test_ramps_exponentially_from_min_to_max():
    steps = jnp.arange(100, dtype=jnp.float32)
    args = {"min_lr": jnp.float32(1e-6), "max_lr": jnp.float32(1.0)}
    lrs = np.asarray(RANGE_TEST.fn(steps, 100, jnp.float32(0.0), args))
    np.testing.assert_allclose([lrs[0], lrs[-1]], [1e-6, 1.0], rtol=1e-5)
    ratios = lrs[1:] / lrs[:-1]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-4)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_a_traced_per_lane_total_is_each_lanes_own_schedule(name):
    """transfer.steps: lanes of one program with different horizons (a traced `total`, one per
    lane under vmap) each follow the schedule of their own run length."""
    import jax

    schedule = SCHEDULES[name]
    args = {k: jnp.float32(v) for k, v in schedule.defaults.items()}
    steps = jnp.arange(TOTAL, dtype=jnp.float32)
    totals = jnp.asarray([50.0, 120.0, float(TOTAL)])
    traced = jax.vmap(lambda t: schedule.fn(steps, t, jnp.float32(PEAK), args))(totals)
    for row, total in zip(np.asarray(traced), (50, 120, TOTAL), strict=True):
        alone = np.asarray(schedule.fn(steps, total, jnp.float32(PEAK), args))
        np.testing.assert_allclose(row, alone, rtol=1e-6, atol=1e-9)
