"""Lane statuses and the Goldilocks verdict on hand-made histories with known answers."""

from __future__ import annotations

import math

import pytest

from sweeps.plan.lanes import Lane
from sweeps.verdict.analysis import analyze, classify_lane
from sweeps.verdict.results import LaneResult

NAN = math.nan


def lane_result(lr, train, val, *, opt="sgd", seed=0, init=2.0, diverged_at=None, spiked=False):
    lane = Lane(0, opt, "constant", lr, seed, {}, {})
    steps = list(range(0, 10 * len(val), 10))
    r = LaneResult(lane, "t0", "accuracy", step=steps)
    r.train_loss = [NAN, *train]
    r.val_loss = val
    # accuracy-like: rises as the validation loss falls (untrained: 0.5 at loss 2.0)
    r.val_metric = [1.0 - v / 4 if math.isfinite(v) else NAN for v in val]
    r.learning_rate = [lr] * len(val)
    r.initial_train_loss = init
    r.diverged_at_step = diverged_at
    r.spiked = spiked
    return r


@pytest.mark.parametrize(
    ("train", "kwargs", "status"),
    [
        ([1.5, 0.8, 0.3], {}, "converged"),
        ([1.99, 1.98, 1.97], {}, "stagnated"),
        ([1.5, NAN, NAN], {"diverged_at": 12}, "diverged"),
        ([3.0, 9.0, 9.5], {}, "diverged"),  # ended above 4x the initial loss: no comeback
        ([1.0, 0.5, 0.4], {"spiked": True}, "unstable"),  # crossed the threshold, came back
        ([1.0, 0.3, 1.2, 0.4], {}, "unstable"),  # climbed > 25 % of init above its low
    ],
)
def test_classify_lane(train, kwargs, status):
    r = lane_result(0.1, train, [2.0] + [1.0] * len(train), **kwargs)
    assert classify_lane(r, diverge_factor=4.0, stagnation_tolerance=0.05) == status


def _grid():
    # val losses over 7 LRs: stagnation, a valley, then divergence.
    shape = [
        (1e-4, [1.99], [2.0, 1.99]),
        (1e-3, [1.9], [2.0, 1.9]),
        (1e-2, [0.6], [2.0, 0.7]),
        (1e-1, [0.2], [2.0, 0.3]),
        (1e0, [0.25], [2.0, 0.35]),
        (1e1, [1.8], [2.0, 1.5]),
        (1e2, [NAN], [2.0, NAN]),
    ]
    results = []
    for lr, train, val in shape:
        diverged = 5 if lr == 1e2 else None
        results.append(lane_result(lr, train, val, diverged_at=diverged))
    return results


def test_group_verdict_finds_best_zone_and_edges_of_stability():
    verdicts, winner = analyze(_grid(), loss="cross_entropy", zone_tolerance=0.2)
    (v,) = verdicts
    assert v.best_lr == 1e-1
    # bar = 0.3 + 0.2 * (2.0 - 0.3) = 0.64: 1e-2 (0.7) is out, 1e0 (0.35) is in.
    assert v.zone == {"low": 1e-1, "high": 1e0}
    # 1e1 trained its loss from 2.0 to only 1.8, above the best LR: collapsed, so the edge
    # is there, not at the NaN of 1e2.
    assert v.max_stable_lr == 1e0
    assert v.min_diverged_lr == 1e1
    assert v.erratic_above_edge == []
    assert v.edge is None
    assert v.status_counts["diverged"] == 2
    # 1e-2 trained (0.7, 76 % of the way) but far from the best (0.3): too slow, not
    # converged; 1e-3 (0.1 of 1.7, 6 %) barely moved: stagnated
    assert v.curve["status"] == [
        "stagnated",
        "stagnated",
        "too_slow",
        "converged",
        "converged",
        "diverged",
        "diverged",
    ]
    assert winner.lane.learning_rate == 1e-1
    assert v.curve["val_loss"][-1] is None


def test_edge_warning_when_best_is_on_the_boundary():
    results = [
        lane_result(lr, [1.0 - i * 0.1], [2.0, 1.0 - i * 0.1])
        for i, lr in enumerate([1e-3, 1e-2, 1e-1])
    ]
    (v,), _ = analyze(results, loss="mse")
    assert v.best_lr == 1e-1 and v.edge == "high"


def test_seeds_average_and_a_diverged_seed_excludes_its_lr():
    results = [
        lane_result(0.1, [0.5], [2.0, 0.5], seed=0),
        lane_result(0.1, [0.7], [2.0, 0.7], seed=1),
        lane_result(1.0, [0.1], [2.0, 0.1], seed=0),
        lane_result(1.0, [NAN], [2.0, NAN], seed=1, diverged_at=3),
    ]
    (v,), winner = analyze(results, loss="mse")
    assert v.best_lr == 0.1  # 1.0 has the lowest single loss but one seed diverged there
    assert v.best_val_loss == pytest.approx(0.6)
    assert v.seed_spread["seeds"] == 2 and v.seed_spread["val_loss_std"] == pytest.approx(0.1)
    assert v.min_diverged_lr == 1.0 and v.max_stable_lr == 0.1
    assert winner.lane.seed == 0


def test_optimizers_are_compared_each_at_its_own_best_lr():
    results = [
        lane_result(0.1, [0.5], [2.0, 0.5], opt="sgd"),
        lane_result(1.0, [0.4], [2.0, 0.45], opt="sgd"),
        lane_result(1e-3, [0.2], [2.0, 0.2], opt="adam"),
        lane_result(1e-2, [NAN], [2.0, NAN], opt="adam", diverged_at=4),
    ]
    verdicts, winner = analyze(results, loss="mse")
    by_opt = {v.optimizer: v for v in verdicts}
    assert by_opt["adam"].rank == 1 and by_opt["sgd"].rank == 2
    assert by_opt["sgd"].best_lr == 1.0 and by_opt["adam"].best_lr == 1e-3
    assert winner.lane.optimizer == "adam"


def test_no_zone_when_nothing_improves():
    results = [lane_result(lr, [2.0], [2.0, 2.1]) for lr in (1e-3, 1e-2)]
    (v,), _ = analyze(results, loss="mse")
    assert v.zone is None
