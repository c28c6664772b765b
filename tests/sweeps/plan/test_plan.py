"""Planning: lanes expanded from a spec, grouped into populations by compiled structure."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest
from conftest import tiny_spec_dict

from sweeps.core.optimizers import OPTIMIZERS
from sweeps.plan.planner import Planner, expand_lanes, plan_populations
from sweeps.plan.search import learning_rates
from sweeps.spec import parse_spec


def make_spec(*, search: dict | None = None, seeds=(0,), cap: int = 256, **overrides):
    raw = tiny_spec_dict(**overrides)
    raw["search"].update(search or {})
    raw["train"]["seeds"] = list(seeds)
    raw["resources"] = {"max_lanes_per_trial": cap}
    return parse_spec(raw)


def lr_range(num: int, lo: float = 1e-4, hi: float = 100.0, scale: str = "log") -> dict:
    return {"min": lo, "max": hi, "num": num, "scale": scale}


# ---------------------------------------------------------------- lane counts

LANE_COUNTS = [
    # 7 LRs x [sgd, adam]
    pytest.param({}, (0,), 14, id="tiny"),
    pytest.param({}, (0, 1, 2), 42, id="three-seeds"),
    # sgd: 3; momentum: 3 LRs x 2 momenta
    pytest.param(
        {
            "learning_rate": lr_range(3),
            "optimizer": ["sgd", "momentum"],
            "optimizer_args": {"momentum": [0.8, 0.9]},
        },
        (0,),
        9,
        id="list-valued-optimizer-arg",
    ),
    # adam: b1 x b2 = 2 x 3 combos; a fixed value (eps) adds none
    pytest.param(
        {
            "learning_rate": lr_range(2),
            "optimizer": ["adam"],
            "optimizer_args": {"b1": [0.8, 0.9], "b2": [0.9, 0.99, 0.999], "eps": 1e-6},
        },
        (0, 1),
        2 * 2 * 3 * 2,
        id="two-searched-args-and-seeds",
    ),
    # 4 LRs x (constant + warmup_cosine with 3 warmups)
    pytest.param(
        {
            "learning_rate": lr_range(4),
            "optimizer": ["adam"],
            "schedule": ["constant", "warmup_cosine"],
            "schedule_args": {"warmup_fraction": [0.05, 0.1, 0.2]},
        },
        (0,),
        16,
        id="schedule-args",
    ),
    # sgd: 5 LRs x 2 schedules, momentum: 5 LRs x 2 momenta x 2 schedules, two seeds
    pytest.param(
        {
            "learning_rate": lr_range(5),
            "optimizer": ["sgd", "momentum"],
            "schedule": ["constant", "cosine"],
            "optimizer_args": {"momentum": [0.8, 0.9]},
            "schedule_args": {"final_fraction": 0.1},
        },
        (0, 1),
        (10 + 20) * 2,
        id="optimizer-and-schedule-grid",
    ),
    # adam: 5 LRs (weight_decay is not adam's); prodigy: one LR per weight_decay
    pytest.param(
        {
            "learning_rate": lr_range(5),
            "optimizer": ["adam", "prodigy"],
            "optimizer_args": {"weight_decay": [0.0, 0.01]},
        },
        (0,),
        5 + 2,
        id="lr-free-optimizer",
    ),
    pytest.param(
        {"learning_rate": lr_range(9), "optimizer": ["prodigy", "dadapt_adamw"]},
        (0, 1),
        2 * 2,
        id="only-lr-free",
    ),
    pytest.param({"method": "random", "num_samples": 11}, (0, 1), 22, id="random"),
    pytest.param({"method": "tpe", "num_samples": 5}, (0,), 5, id="tpe"),
    pytest.param({"learning_rate": lr_range(1, 0.1, 0.1)}, (0,), 2, id="single-lr"),
]


@pytest.mark.parametrize(("search", "seeds", "expected"), LANE_COUNTS)
def test_lane_count_matches_expansion(search, seeds, expected):
    spec = make_spec(search=search, seeds=seeds)
    planner = Planner(spec)
    while planner.ask() is not None:  # tpe makes its lanes as it is asked
        pass
    assert spec.lane_count() == expected == planner.expected_lanes
    assert len(planner.lanes) == expected


def test_list_valued_args_are_searched_and_fixed_args_applied():
    spec = make_spec(
        search={
            "learning_rate": lr_range(3),
            "optimizer": ["sgd", "momentum", "adam"],
            "optimizer_args": {"momentum": [0.8, 0.9], "b1": 0.85},
        }
    )
    lanes = expand_lanes(spec)
    momenta = Counter(
        lane.optimizer_args["momentum"] for lane in lanes if lane.optimizer == "momentum"
    )
    assert momenta == {0.8: 3, 0.9: 3}
    adam = [lane for lane in lanes if lane.optimizer == "adam"]
    # defaults filled in, the fixed value applied
    assert all(lane.optimizer_args == {"b1": 0.85, "b2": 0.999, "eps": 1e-8} for lane in adam)
    assert all(lane.optimizer_args == {} for lane in lanes if lane.optimizer == "sgd")


def test_lr_free_optimizer_gets_one_lr_per_arg_combination():
    spec = make_spec(
        search={
            "learning_rate": lr_range(5),
            "optimizer": ["adam", "prodigy"],
            "optimizer_args": {"weight_decay": [0.0, 0.01]},
        },
        seeds=(0, 1),
    )
    prodigy = [lane for lane in expand_lanes(spec) if lane.optimizer == "prodigy"]
    assert len(prodigy) == 2 * 2  # 2 weight decays x 2 seeds, not the 5-point LR grid
    assert {lane.learning_rate for lane in prodigy} == {OPTIMIZERS["prodigy"].default_lr}
    assert sorted(lane.optimizer_args["weight_decay"] for lane in prodigy) == [0.0, 0.0, 0.01, 0.01]


# ---------------------------------------------------------------- the LR grid


@pytest.mark.parametrize(
    ("lo", "hi", "num"), [(1e-5, 10.0, 25), (1e-4, 100.0, 7), (3e-3, 0.7, 2), (1e-7, 1.0, 101)]
)
def test_log_grid_endpoints_equal_min_and_max(lo, hi, num):
    lrs = learning_rates(make_spec(search={"learning_rate": lr_range(num, lo, hi)}))
    assert len(lrs) == num
    assert lrs[0] == lo and lrs[-1] == hi
    assert all(isinstance(v, float) for v in lrs)
    ratios = np.array(lrs[1:]) / np.array(lrs[:-1])
    np.testing.assert_allclose(ratios, (hi / lo) ** (1 / (num - 1)), rtol=1e-9)


def test_linear_grid_is_evenly_spaced():
    lrs = learning_rates(make_spec(search={"learning_rate": lr_range(5, 0.1, 0.5, "linear")}))
    np.testing.assert_allclose(lrs, [0.1, 0.2, 0.3, 0.4, 0.5])
    assert lrs[0] == 0.1 and lrs[-1] == 0.5


def test_single_lr_grid_is_min():
    assert learning_rates(make_spec(search={"learning_rate": lr_range(1, 0.03, 0.03)})) == [0.03]


def test_grid_lanes_cover_every_lr_for_every_seed():
    spec = make_spec(seeds=(0, 7))
    lrs = learning_rates(spec)
    lanes = expand_lanes(spec)
    for opt in ("sgd", "adam"):
        got = sorted((lane.learning_rate, lane.seed) for lane in lanes if lane.optimizer == opt)
        assert got == sorted((lr, seed) for lr in lrs for seed in (0, 7))


# ---------------------------------------------------------------- populations


@pytest.mark.parametrize(
    ("num_lrs", "seeds", "cap", "sizes"),
    [
        pytest.param(300, (0,), 256, [150, 150], id="300-at-256"),
        pytest.param(256, (0,), 256, [256], id="exactly-cap"),
        pytest.param(257, (0,), 256, [129, 128], id="one-over-cap"),
        pytest.param(100, (0, 1, 2), 256, [150, 150], id="300-via-seeds"),
        pytest.param(10, (0,), 3, [3, 3, 2, 2], id="10-at-3"),
        pytest.param(7, (0,), 1, [1] * 7, id="cap-one"),
    ],
)
def test_populations_are_balanced_chunks_under_the_cap(num_lrs, seeds, cap, sizes):
    spec = make_spec(
        search={"learning_rate": lr_range(num_lrs), "optimizer": ["adam"]}, seeds=seeds, cap=cap
    )
    pops = plan_populations(spec)
    assert [len(p.lanes) for p in pops] == sizes
    assert all(len(p.lanes) <= cap for p in pops)


def test_populations_group_by_optimizer_and_schedule():
    spec = make_spec(
        search={
            "learning_rate": lr_range(3),
            "optimizer": ["sgd", "momentum"],
            "schedule": ["constant", "cosine"],
            "optimizer_args": {"momentum": [0.8, 0.9]},
            "schedule_args": {"final_fraction": [0.0, 0.1]},
        },
        seeds=(0, 1),
    )
    lanes = expand_lanes(spec)
    pops = plan_populations(spec)
    # one population per structure: numeric args share one compile
    assert [(p.optimizer, p.schedule) for p in pops] == [
        ("sgd", "constant"),
        ("sgd", "cosine"),
        ("momentum", "constant"),
        ("momentum", "cosine"),
    ]
    assert [len(p.lanes) for p in pops] == [3 * 2, 3 * 2 * 2, 3 * 2 * 2, 3 * 2 * 2 * 2]
    for p in pops:
        assert {(lane.optimizer, lane.schedule) for lane in p.lanes} == {(p.optimizer, p.schedule)}
        assert p.optimizer in p.id and p.schedule in p.id
    momentum_cosine = pops[3]
    assert {lane.optimizer_args["momentum"] for lane in momentum_cosine.lanes} == {0.8, 0.9}
    assert {lane.schedule_args["final_fraction"] for lane in momentum_cosine.lanes} == {0.0, 0.1}
    assert len({p.id for p in pops}) == len(pops)
    # every lane in exactly one population
    planned = [lane.index for p in pops for lane in p.lanes]
    assert sorted(planned) == list(range(len(lanes)))


def test_populations_chunk_each_structure_separately():
    spec = make_spec(search={"learning_rate": lr_range(5)}, seeds=(0, 1), cap=4)
    pops = plan_populations(spec)
    # sgd and adam each have 10 lanes: 4+3+3 each, never mixed
    assert [(p.optimizer, len(p.lanes)) for p in pops] == [
        ("sgd", 4),
        ("sgd", 3),
        ("sgd", 3),
        ("adam", 4),
        ("adam", 3),
        ("adam", 3),
    ]
    assert len({p.id for p in pops}) == 6


# ---------------------------------------------------------------- indices


def test_lane_indices_are_unique_positions_and_stable():
    search = {
        "learning_rate": lr_range(4),
        "optimizer": ["sgd", "momentum", "prodigy"],
        "optimizer_args": {"momentum": [0.8, 0.9]},
    }
    spec = make_spec(search=search, seeds=(0, 1))
    first = expand_lanes(spec)
    assert [lane.index for lane in first] == list(range(len(first)))
    # the same spec, parsed again, gives the very same lanes
    assert expand_lanes(make_spec(search=search, seeds=(0, 1))) == first
    # stable order: optimizer, schedule, args, LR, then seed
    assert (first[0].optimizer, first[0].learning_rate, first[0].seed) == ("sgd", 1e-4, 0)
    assert (first[1].optimizer, first[1].learning_rate, first[1].seed) == ("sgd", 1e-4, 1)
    assert (first[2].learning_rate, first[2].seed) == (learning_rates(spec)[1], 0)
    assert (first[-1].optimizer, first[-1].seed) == ("prodigy", 1)
    # populations keep each lane's index
    planned = {lane.index: lane for p in plan_populations(spec) for lane in p.lanes}
    assert all(planned[lane.index] == lane for lane in first)


# ---------------------------------------------------------------- random search


def random_spec(seed: int, scale: str = "log", **search):
    return make_spec(
        search={
            "method": "random",
            "num_samples": 40,
            "seed": seed,
            "learning_rate": lr_range(25, 1e-4, 1e-1, scale),
            "optimizer": ["sgd", "momentum", "prodigy"],
            "optimizer_args": {"momentum": [0.8, 0.9, 0.95]},
            **search,
        },
        seeds=(0, 1),
    )


def test_random_search_is_deterministic_by_seed():
    a, b, c = (
        expand_lanes(random_spec(3)),
        expand_lanes(random_spec(3)),
        expand_lanes(random_spec(4)),
    )
    assert a == b
    assert [lane.learning_rate for lane in a] != [lane.learning_rate for lane in c]
    assert len(a) == len(c) == 80


@pytest.mark.parametrize("scale", ["log", "linear"])
def test_random_search_lrs_within_range(scale):
    lanes = expand_lanes(random_spec(0, scale))
    searched = [lane for lane in lanes if lane.optimizer != "prodigy"]
    assert searched, "every sample was lr-free"
    lrs = np.array([lane.learning_rate for lane in searched])
    assert lrs.min() >= 1e-4 and lrs.max() <= 1e-1
    assert len(set(lrs.tolist())) > 10  # sampled, not a grid
    for lane in lanes:
        if lane.optimizer == "prodigy":
            assert lane.learning_rate == OPTIMIZERS["prodigy"].default_lr
        if lane.optimizer == "momentum":
            assert lane.optimizer_args["momentum"] in (0.8, 0.9, 0.95)
    # each sampled point runs once per seed, side by side
    for even, odd in zip(lanes[::2], lanes[1::2], strict=True):
        assert (even.seed, odd.seed) == (0, 1)
        assert even.learning_rate == odd.learning_rate and even.optimizer == odd.optimizer


def test_random_search_samples_every_optimizer():
    counts = Counter(lane.optimizer for lane in expand_lanes(random_spec(1)))
    assert set(counts) == {"sgd", "momentum", "prodigy"}


# ---------------------------------------------------------------- Goldilocks groups


def test_group_key_separates_argument_values_not_lrs_or_seeds():
    spec = make_spec(
        search={
            "learning_rate": lr_range(3),
            "optimizer": ["momentum", "adam"],
            "optimizer_args": {"momentum": [0.8, 0.9]},
            "schedule": ["constant", "warmup_cosine"],
            "schedule_args": {"warmup_fraction": [0.1, 0.2]},
        },
        seeds=(0, 1),
    )
    groups = defaultdict(list)
    for lane in expand_lanes(spec):
        groups[lane.group_key].append(lane)
    # momentum: 2 momenta x (constant + 2 warmups); adam: 1 x (constant + 2 warmups)
    assert len(groups) == 2 * 3 + 3
    for members in groups.values():
        assert len(members) == 3 * 2  # every LR for every seed
        assert len({(m.learning_rate, m.seed) for m in members}) == 6
    key_08 = next(
        k for k in groups if k[0] == "momentum" and k[1] == "constant" and ("momentum", 0.8) in k[2]
    )
    key_09 = next(
        k for k in groups if k[0] == "momentum" and k[1] == "constant" and ("momentum", 0.9) in k[2]
    )
    assert key_08 != key_09
    assert {m.optimizer_args["momentum"] for m in groups[key_08]} == {0.8}
    warmups = {k[3] for k in groups if k[1] == "warmup_cosine"}
    assert len(warmups) == 2
