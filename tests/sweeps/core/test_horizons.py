"""transfer.steps: lanes of different horizons in one program, each its own run of T steps."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from models import MLPSpec
from sweeps.core.optimizers import OPTIMIZERS
from sweeps.core.population import Timing, train_population
from sweeps.core.program import Structure, make_hyperparams
from sweeps.core.schedules import HORIZON, SCHEDULES

BATCH, EVAL = 32, 10
MODEL = MLPSpec(name="mlp", hidden=[16])
HORIZONS = [20, 40, 60]


def _hp(optimizer, schedule, lrs, horizons=None):
    n = len(lrs)
    sched = {k: np.full(n, v) for k, v in SCHEDULES[schedule].defaults.items()}
    if horizons is not None:
        sched[HORIZON] = np.asarray(horizons, np.float32)
    opt = {k: np.full(n, v) for k, v in OPTIMIZERS[optimizer].defaults.items()}
    return make_hyperparams(lrs, opt, sched)


@pytest.mark.parametrize(("optimizer", "schedule"), [("adam", "cosine"), ("momentum", "wsd")])
def test_a_lane_at_horizon_t_equals_the_lane_trained_alone_for_t_steps(iris, optimizer, schedule):
    lrs = [3e-3, 3e-2, 3e-3, 3e-2, 3e-3, 3e-2]
    horizons = [h for h in HORIZONS for _ in range(2)]
    seeds = np.array([0, 1] * 3)
    longest = Structure(MODEL, "cross_entropy", optimizer, schedule, BATCH, max(HORIZONS), EVAL)
    timing = Timing()
    together = list(
        train_population(longest, iris, _hp(optimizer, schedule, lrs, horizons), seeds,
                         timing=timing)
    )  # fmt: skip
    # one program for every horizon: one init, one eval, one chunk
    assert timing.compiles <= 3
    at_step = {p.step: p for p in together}
    for t in HORIZONS:
        alone_structure = Structure(MODEL, "cross_entropy", optimizer, schedule, BATCH, t, EVAL)
        lanes = [i for i, h in enumerate(horizons) if h == t]
        alone = list(
            train_population(
                alone_structure, iris, _hp(optimizer, schedule, [lrs[i] for i in lanes]),
                seeds[lanes],
            )
        )  # fmt: skip
        for j, i in enumerate(lanes):
            # every eval point up to its horizon is the lone run's ...
            for p in alone:
                np.testing.assert_allclose(at_step[p.step].val_loss[i], p.val_loss[j], rtol=2e-5)
            # ... and after it the lane stands still: the final loss is the horizon's
            np.testing.assert_allclose(together[-1].val_loss[i], alone[-1].val_loss[j], rtol=2e-5)
            a = jax.tree.leaves(jax.tree.map(lambda x, i=i: x[i], together[-1].state[0].params))
            b = jax.tree.leaves(jax.tree.map(lambda x, j=j: x[j], alone[-1].state[0].params))
            for x, y in zip(a, b, strict=True):
                np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-4, atol=2e-6)
            assert together[-1].diverged_at[i] == -1  # stopped, not diverged
