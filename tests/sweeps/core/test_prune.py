"""Pruning inside a population (sweeps/core/prune.py): the rule, and that repacking the live
lanes into fewer slices changes no number of theirs."""

from __future__ import annotations

import jax
import numpy as np

from models import MLPSpec
from sweeps.core.optimizers import OPTIMIZERS
from sweeps.core.population import Timing, train_population
from sweeps.core.program import Structure, forget_programs, make_hyperparams
from sweeps.core.prune import LIVE, PruneState, decide, rung_steps

NAN = np.nan


# --------------------------------------------------------------------------- the rule
def test_rungs_fall_on_eval_points_inside_the_run():
    assert rung_steps([0.25, 0.5], 100, 10) == [20, 50]  # 25 rounds to the eval point 20
    assert rung_steps([0.01, 0.5, 0.99], 100, 10) == [50]  # none at 0 or at the end


def _decide(lrs, start, val, diverged=None, group=None, live=None):
    n = len(lrs)
    return decide(
        np.asarray(lrs, float),
        np.zeros(n, int) if group is None else np.asarray(group),
        np.asarray(start, float),
        np.asarray(val, float),
        np.zeros(n, bool) if diverged is None else np.asarray(diverged, bool),
        np.ones(n, bool) if live is None else np.asarray(live, bool),
    )


def test_below_the_best_and_far_behind_stops_above_it_trains_on():
    lrs = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    start = [2.3] * 5
    # best: 1e-2 (gain 2.0). 1e-4 gained 0.1 (5 %), 1e-3 gained 0.6 (30 %: kept),
    # 1e-1 and 1.0 above the best keep training however bad
    val = [2.2, 1.7, 0.3, 2.29, 2.3]
    assert _decide(lrs, start, val).tolist() == [True, False, False, False, False]


def test_diverged_lanes_stop_wherever_they_are():
    lrs = [1e-3, 1e-2, 1.0]
    stop = _decide(lrs, [2.3] * 3, [1.0, 0.5, NAN], diverged=[False, False, True])
    assert stop.tolist() == [False, False, True]


def test_seeds_of_one_lr_are_decided_together():
    # 1e-3 has two seeds: one gained 0.1 (5 % of the best's 2.0), the other 1.1; their mean
    # (0.6) is 30 %: kept, both; at a fraction of 35 % both stop, never one alone
    lrs = [1e-3, 1e-3, 1e-2, 1e-2]
    start = [2.3] * 4
    val = [2.2, 1.2, 0.3, 0.3]
    assert _decide(lrs, start, val).tolist() == [False] * 4
    stop = decide(np.array(lrs), np.zeros(4, int), np.array(start), np.array(val),
                  np.zeros(4, bool), np.ones(4, bool), fraction=0.35)  # fmt: skip
    assert stop.tolist() == [True, True, False, False]


def test_groups_are_decided_apart_and_nothing_learned_prunes_nothing():
    lrs = [1e-3, 1e-2, 1e-3, 1e-2]
    group = [0, 0, 1, 1]
    # group 0: 1e-3 far behind; group 1: nobody improved yet, no yardstick
    val = [2.25, 0.5, 2.3, 2.31]
    assert _decide(lrs, [2.3] * 4, val, group=group).tolist() == [True, False, False, False]


def test_lanes_already_stopped_are_left_alone():
    stop = _decide([1e-3, 1e-2], [2.3, 2.3], [2.25, 0.5], live=[False, True])
    assert stop.tolist() == [False, False]


# --------------------------------------------------------------------------- the trainer
STEPS, BATCH, EVAL = 40, 32, 10
# SGD over 5 decades: the low LRs barely move on iris in 40 steps, 1e9 overflows at once
LRS = [1e-4, 1e-4, 1e-3, 1e-3, 0.1, 0.1, 0.5, 0.5, 1e9, 1e9]
SEEDS = [0, 1] * 5


def _run(iris, width, **kw):
    seeds = np.asarray(SEEDS)
    forget_programs()
    timing = Timing()
    gen = train_population(
        _structure(), iris, _hp(), seeds, width=width, threads=1, timing=timing, **kw
    )
    points, saved = [], {}
    for p in gen:
        points.append(p)
        saved[p.step] = (jax.tree.map(np.asarray, p.state), p.prune)  # before it is donated
    saved["compiles"] = timing.compiles
    return points, saved


def test_pruned_population_equals_the_unpruned_on_every_lane_it_trains(iris):
    dense, dense_saved = _run(iris, width=4)
    pruned, saved = _run(iris, width=4, rungs=[10, 20], groups=np.zeros(len(LRS), int))
    assert saved["compiles"] == dense_saved["compiles"] == 3  # init, eval, chunk: no recompile
    at = pruned[-1].prune.pruned_at
    assert (at[8:] == 10).all()  # 1e9 diverged: stopped at the first rung
    assert (at[:2] >= 0).all() and (at[4:8] == LIVE).all()  # 1e-4 far behind; the best trains
    assert len(pruned[-1].state) < len(dense[-1].state)  # fewer slices of the same width
    assert pruned[-1].width == dense[-1].width == 4
    for d, p in zip(dense, pruned, strict=True):
        assert d.step == p.step
        for i in range(len(LRS)):
            if at[i] == LIVE or p.step <= at[i]:
                np.testing.assert_allclose(p.val_loss[i], d.val_loss[i], rtol=1e-6)
                np.testing.assert_allclose(p.train_loss[i], d.train_loss[i], rtol=1e-6)
            else:  # after its rung a pruned lane's rows are NaN, its divergence kept
                assert np.isnan(p.val_loss[i]) and np.isnan(p.train_loss[i])
                assert p.diverged_at[i] == d.diverged_at[i] or i < 8


def test_a_resumed_pruned_population_carries_on_as_it_would_have(iris):
    groups = np.zeros(len(LRS), int)
    whole, saved = _run(iris, width=4, rungs=[10, 20], groups=groups)
    state, prune = saved[20]
    resumed = list(
        train_population(
            _structure(), iris, _hp(), np.asarray(SEEDS), width=4,
            threads=1, start=state, start_step=20, rungs=[10, 20], groups=groups,
            pruned=PruneState.from_json(prune.to_json()),
        )
    )  # fmt: skip
    assert [p.step for p in resumed] == [30, 40]
    for got, want in zip(resumed, whole[-2:], strict=True):
        np.testing.assert_array_equal(got.prune.pruned_at, want.prune.pruned_at)
        np.testing.assert_allclose(got.val_loss, want.val_loss, rtol=1e-6)


def _structure():
    return Structure(MLPSpec(name="mlp", hidden=[16]), "cross_entropy", "sgd", "constant",
                     BATCH, STEPS, EVAL)  # fmt: skip


def _hp():
    n = len(LRS)
    return make_hyperparams(
        LRS, {k: np.full(n, v) for k, v in OPTIMIZERS["sgd"].defaults.items()}, {}
    )


def test_a_population_whose_every_lane_stopped_still_reaches_the_end(iris):
    n = 4
    hp = make_hyperparams(
        [1e9] * n, {k: np.full(n, v) for k, v in OPTIMIZERS["sgd"].defaults.items()}, {}
    )
    kw = dict(width=2, threads=1, rungs=[10, 20], groups=np.zeros(n, int))
    points = list(train_population(_structure(), iris, hp, np.arange(n), **kw))
    assert [p.step for p in points] == [0, 10, 20, 30, 40]
    assert (points[-1].prune.pruned_at == 10).all()  # all diverged at once: stopped at the first
    assert (points[-1].diverged_at >= 0).all() and np.isnan(points[-1].val_loss).all()
    resumed = list(train_population(_structure(), iris, hp, np.arange(n), start=[], start_step=20,
                                    pruned=points[2].prune, **kw))  # fmt: skip
    assert [p.step for p in resumed] == [30, 40] and np.isnan(resumed[-1].val_loss).all()


def test_a_pruned_lane_history_stops_at_its_rung_and_counts_as_done():
    from sweeps.plan.lanes import Lane
    from sweeps.stream import TrialPoint
    from sweeps.verdict.results import LaneRecorder

    lanes = [Lane(i, "sgd", "constant", lr, 0, {}, {}) for i, lr in enumerate([1e-4, 1e-2])]
    rec = LaneRecorder(lanes, "t", "accuracy")
    for step, at in [(0, [-1, -1]), (10, [10, -1]), (20, [10, -1])]:
        v = np.array([2.0 - step / 100, 2.0 - step / 10]) if step < 20 else np.array([NAN, 0.1])
        point = TrialPoint("t", step, v, v, {"accuracy": v}, v, np.array([-1, -1]),
                           np.zeros(2, bool), None, pruned_at=np.array(at))  # fmt: skip
        rec.record(TrialPoint.from_json(point.to_json()))  # as a Ray trial sends it
    pruned, kept = rec.results
    assert pruned.step == [0, 10] and pruned.pruned_at_step == 10
    assert kept.step == [0, 10, 20] and kept.pruned_at_step is None
    assert [rec.steps_done(i) for i in range(2)] == [20, 20]
