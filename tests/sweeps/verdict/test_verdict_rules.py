"""The verdict tells the truth: the cases that contradicted themselves, and its invariants as
property tests over synthetic lane histories."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sweeps.plan.lanes import Lane
from sweeps.verdict.analysis import NOT_STABLE, STATUS_ORDER, analyze, blew_up
from sweeps.verdict.results import LaneResult

NAN = math.nan
LN10 = math.log(10)  # cross-entropy of a 10-class guess: chance level


def lane(lr, train, val, metric, *, seed=0, init=LN10, diverged_at=None, spiked=False, opt="adam"):
    r = LaneResult(Lane(0, opt, "constant", lr, seed, {}, {}), "t0", "accuracy")
    r.step = [10 * i for i in range(len(val))]
    r.train_loss = [NAN, *train]
    r.val_loss = list(val)
    r.val_metric = list(metric)
    r.learning_rate = [lr] * len(val)
    r.initial_train_loss = init
    r.diverged_at_step = diverged_at
    r.spiked = spiked
    return r


def digits_like_adam() -> list[LaneResult]:
    """The demo's Adam column, as measured: a slow low end, a valley, and two high LRs that
    blew up and ended at chance (2.32 = ln 10, 9 % accuracy) or never came down (275)."""
    return [
        lane(1e-5, [2.2, 2.0, 1.8], [LN10, 2.1, 1.95, 1.8], [0.1, 0.2, 0.25, 0.30]),
        lane(1e-4, [1.5, 0.8, 0.4], [LN10, 1.4, 0.7, 0.35], [0.1, 0.6, 0.85, 0.91]),
        lane(1e-3, [0.9, 0.2, 0.05], [LN10, 0.6, 0.15, 0.09], [0.1, 0.85, 0.95, 0.978]),
        lane(1e-2, [0.8, 0.3, 0.1], [LN10, 0.5, 0.2, 0.12], [0.1, 0.86, 0.94, 0.965]),
        lane(1e-1, [5.0, 0.9, 0.5], [LN10, 1.2, 0.6, 0.45], [0.1, 0.6, 0.8, 0.886], spiked=True),
        lane(
            1.0, [3900.0, 2.4, 2.32], [LN10, 50.0, 2.35, 2.32], [0.1, 0.1, 0.09, 0.09], spiked=True
        ),
        lane(2.15, [NAN, NAN, NAN], [LN10, NAN, NAN, NAN], [0.1, NAN, NAN, NAN], diverged_at=3),
        lane(
            4.64,
            [300.0, 280.0, 275.0],
            [LN10, 280.0, 276.0, 275.0],
            [0.1, 0.1, 0.1, 0.1],
            spiked=True,
        ),
    ]


def by_lr(results):
    return {r.lane.learning_rate: r for r in results}


def test_a_blow_up_that_ends_at_chance_is_diverged_not_unstable():
    results = digits_like_adam()
    (v,), _ = analyze(results, loss="cross_entropy")
    lanes = by_lr(results)
    assert lanes[1.0].status == "diverged"  # 3900, then ln 10 at 9 %: collapsed
    assert lanes[4.64].status == "diverged"  # 275 the whole run: never trained
    assert lanes[1e-1].status == "unstable"  # spiked and still ended clearly better
    # 1e-1 spiked: it is not called stable; the stable LRs stop just below it
    assert v.min_diverged_lr == 1.0 and v.max_stable_lr == 1e-2 and v.first_unstable_lr == 1e-1
    assert v.max_stable_lr < v.min_diverged_lr


def test_slow_lanes_are_not_converged():
    results = digits_like_adam()
    analyze(results, loss="cross_entropy")
    assert by_lr(results)[1e-5].status == "stagnated"  # 30 %: a fifth of the way, barely moved
    assert by_lr(results)[1e-4].status == "too_slow"  # 91 %: most of the way, not there
    assert by_lr(results)[1e-3].status == "converged"


def test_the_zone_holds_only_lrs_close_to_the_best():
    results = digits_like_adam()
    (v,), winner = analyze(results, loss="cross_entropy")
    assert v.best_lr == 1e-3 and winner.lane.learning_rate == 1e-3
    lanes = by_lr(results)
    inside = [lr for lr in lanes if v.zone["low"] <= lr <= v.zone["high"]]
    assert 1e-3 in inside and 1e-1 not in inside and 1e-4 not in inside
    best_acc = lanes[v.best_lr].best_val_metric
    assert all(best_acc - lanes[lr].best_val_metric <= 0.03 for lr in inside)


def test_finite_lanes_above_the_edge_are_reported_not_hidden():
    results = [
        lane(1e-3, [1.0, 0.3, 0.1], [LN10, 0.6, 0.2, 0.1], [0.1, 0.8, 0.95, 0.97]),
        lane(1e-2, [NAN, NAN, NAN], [LN10, NAN, NAN, NAN], [0.1, NAN, NAN, NAN], diverged_at=2),
        # far above the edge, it happened to end finite and even fairly low
        lane(1e-1, [9.0, 0.9, 0.5], [LN10, 2.0, 0.7, 0.6], [0.1, 0.5, 0.8, 0.85], spiked=True),
    ]
    (v,), _ = analyze(results, loss="cross_entropy")
    assert v.min_diverged_lr == 1e-2 and v.max_stable_lr == 1e-3
    assert v.erratic_above_edge == [1e-1]


def test_a_hot_lr_that_never_trained_is_diverged_even_without_a_spike():
    """Lion at 0.1-1 on the CNN example: loss flat at its start, accuracy at chance."""
    results = [
        lane(1e-3, [1.0, 0.3, 0.1], [LN10, 0.6, 0.2, 0.1], [0.1, 0.8, 0.95, 0.97], opt="lion"),
        lane(1e-1, [2.31, 2.30, 2.30], [LN10, 2.31, 2.3, 2.3], [0.1, 0.1, 0.1, 0.1], opt="lion"),
        lane(1.0, [2.32, 2.31, 2.30], [LN10, 2.33, 2.3, 2.3], [0.1, 0.1, 0.1, 0.1], opt="lion"),
    ]
    (v,), _ = analyze(results, loss="cross_entropy")
    assert [r.status for r in results] == ["converged", "diverged", "diverged"]
    assert v.max_stable_lr == 1e-3 and v.min_diverged_lr == 1e-1


# --------------------------------------------------------------------------- properties
@st.composite
def group_histories(draw):
    """One group: a log grid of LRs, each with 1-2 seeds of random-but-plausible histories."""
    n = draw(st.integers(2, 9))
    lrs = [float(v) for v in np.geomspace(1e-4, 10.0, n)]
    seeds = draw(st.integers(1, 2))
    results = []
    for lr in lrs:
        # search.prune: an LR stopped at a rung (every seed): its history ends at step 10
        pruned = draw(st.booleans()) and draw(st.booleans())
        for seed in range(seeds):
            kind = draw(
                st.sampled_from(["train", "slow", "spike", "nan", "collapse", "flat", "val_blowup"])
            )
            finals = draw(st.lists(st.floats(0.01, 2.2), min_size=3, max_size=3))
            finals = sorted(finals, reverse=True)
            if kind == "slow":
                train = [LN10 - 0.01 * (i + 1) for i in range(3)]
            elif kind == "spike":
                train = [draw(st.floats(10.0, 1e4)), *finals[1:]]
            elif kind == "collapse":
                train = [draw(st.floats(10.0, 1e4)), LN10 + 0.01, LN10]
            elif kind == "flat":
                train = [LN10, LN10, LN10]
            elif kind == "nan":
                train = [finals[0], NAN, NAN]
            else:
                train = finals
            val = [LN10] + [v + draw(st.floats(0.0, 0.3)) for v in train]
            if kind == "val_blowup":  # training loss unremarkable, validation loss explodes
                train = [2.2, 2.1, 2.0]
                val = [LN10, 2.33, draw(st.floats(5.0, 12.0)), draw(st.floats(12.0, 50.0))]
            acc = [0.1] + [
                max(0.0, min(1.0, 1.0 - v / LN10)) if math.isfinite(v) else NAN for v in val[1:]
            ]
            one = lane(
                lr,
                train,
                val,
                acc,
                seed=seed,
                diverged_at=15 if kind == "nan" else None,
                spiked=kind in ("spike", "collapse"),
            )
            if pruned:
                cut = 2
                one.step, one.train_loss = one.step[:cut], one.train_loss[:cut]
                one.val_loss, one.val_metric = one.val_loss[:cut], one.val_metric[:cut]
                one.learning_rate, one.pruned_at_step = one.learning_rate[:cut], 10
                one.diverged_at_step = None  # (a NaN after the rung never happened)
                one.spiked = kind == "spike" and math.isfinite(one.train_loss[1])
            results.append(one)
    return results


@settings(max_examples=300, deadline=None)
@given(group_histories())
def test_verdict_invariants(results):
    (v,), winner = analyze(results, loss="cross_entropy")
    statuses = {}
    for r in results:
        statuses.setdefault(r.lane.learning_rate, set()).add(r.status)
    if v.max_stable_lr is not None and v.min_diverged_lr is not None:
        assert v.max_stable_lr < v.min_diverged_lr
    if v.max_stable_lr is not None:  # no LR called stable has an unstable or diverged lane,
        assert v.best_lr is not None and v.best_lr <= v.max_stable_lr
        for lr, s in statuses.items():  # nor any LR on the way up to it from the best
            if v.best_lr <= lr <= v.max_stable_lr:
                assert not s & set(NOT_STABLE), (lr, s)
    if v.first_unstable_lr is not None:
        assert "unstable" in statuses[v.first_unstable_lr]
        assert v.max_stable_lr is None or v.max_stable_lr < v.first_unstable_lr
    if v.best_lr is not None:
        assert "diverged" not in statuses[v.best_lr]
        if not statuses[v.best_lr] & set(NOT_STABLE):
            assert v.max_stable_lr is not None
        if v.min_diverged_lr is not None:
            assert v.best_lr < v.min_diverged_lr or v.min_diverged_lr < v.best_lr
    # a pruned lane is never stable, never the best, never inside the zone
    for lr, s in statuses.items():
        if "pruned" in s:
            assert lr != v.best_lr
            assert v.max_stable_lr is None or not v.best_lr <= lr <= v.max_stable_lr
            assert v.zone is None or not v.zone["low"] <= lr <= v.zone["high"]
    for r in results:
        assert (r.status == "pruned") <= (r.pruned_at_step is not None)
        if r.pruned_at_step is not None:
            assert r.status in ("pruned", "diverged")
    if v.zone is not None:
        assert v.zone["low"] <= v.best_lr <= v.zone["high"] <= v.max_stable_lr
        for lr, s in statuses.items():
            if v.zone["low"] <= lr <= v.zone["high"]:
                assert s == {"converged"}, (lr, s)  # never unstable or diverged inside
        if v.min_diverged_lr is not None and v.min_diverged_lr > v.best_lr:
            assert v.zone["high"] < v.min_diverged_lr
    # physics: above the edge, a lane that did not diverge is flagged, not silently healthy
    if v.min_diverged_lr is not None and v.best_lr is not None and v.min_diverged_lr > v.best_lr:
        for lr, s in statuses.items():
            if lr > v.min_diverged_lr and "diverged" not in s:
                assert lr in v.erratic_above_edge
    # the winner trains at the table's best LR of the top-ranked group
    if winner is not None:
        assert v.rank == 1 and winner.lane.learning_rate == v.best_lr
    # a lane that blew up and ended where it started is never called healthy
    for r in results:
        if r.spiked and r.train_loss[-1] >= 0.95 * r.initial_train_loss:
            assert r.status == "diverged"
        assert r.status in STATUS_ORDER
        # unstable only with a spike; too high, too slow and stagnated never spiked
        assert (r.status == "unstable") <= blew_up(r, 4.0)
        if r.status in ("too_high", "too_slow", "stagnated", "converged"):
            assert not blew_up(r, 4.0), r
        # every diverged lane says where: one of its own eval points
        if r.status == "diverged":
            assert r.diverged_at_step in r.step[1:] or r.diverged_at_step == 15  # 15: frozen
    # too high above the best LR it was measured against, too slow at or below it
    if v.best_lr is not None:
        for r in results:
            if r.status == "too_slow":
                assert r.lane.learning_rate <= first_pass_best(results)
            if r.status == "too_high":
                assert r.lane.learning_rate > first_pass_best(results)
    assert sum(v.status_counts.values()) == len(results)


def first_pass_best(results) -> float:
    """The LR with the lowest mean best validation loss among LRs with no diverged seed."""
    by = {}
    for r in results:
        by.setdefault(r.lane.learning_rate, []).append(r)
    ok = {
        lr: rs for lr, rs in by.items() if all(r.status not in ("diverged", "pruned") for r in rs)
    }
    return min(ok, key=lambda lr: (float(np.mean([r.best_val_loss for r in ok[lr]])), lr))


def test_a_blow_up_whose_validation_loss_never_improved_is_diverged():
    """schedules, adam at 0.2: training loss came back down, validation loss never went below
    its start. It did not train: diverged, with the step where it blew up."""
    results = [
        lane(1e-3, [1.0, 0.3, 0.1], [LN10, 0.6, 0.2, 0.1], [0.1, 0.8, 0.95, 0.97]),
        lane(0.2, [40.0, 1.2, 0.9], [LN10, 6.0, 4.0, 3.99], [0.1, 0.3, 0.5, 0.55], spiked=True),
    ]
    analyze(results, loss="cross_entropy")
    assert results[1].status == "diverged" and results[1].diverged_at_step == 10
