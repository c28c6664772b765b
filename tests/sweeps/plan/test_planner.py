"""The planner is the only place lanes are made: fixed plans up front, tpe one point at a time
from what it is told, and an adaptive plan survives a restart through plan.json."""

from __future__ import annotations

import math

import numpy as np
from conftest import tiny_spec_dict

from sweeps.plan.planner import Planner
from sweeps.plan.search import BAD_SCORE, TpeSearcher, trial_score
from sweeps.spec import parse_spec


def tpe_spec(num_samples: int = 6, seeds=(0, 1), **search) -> object:
    raw = tiny_spec_dict()
    raw["train"]["seeds"] = list(seeds)
    raw["search"] = {
        "method": "tpe",
        "num_samples": num_samples,
        "seed": 7,
        "learning_rate": {"min": 1e-4, "max": 1.0},
        "optimizer": ["sgd", "momentum"],
        "optimizer_args": {"momentum": [0.8, 0.9]},
        **search,
    }
    return parse_spec(raw)


def drain(planner: Planner, score=lambda pop: np.array([1.0] * len(pop.lanes))) -> list:
    made = []
    while (pop := planner.ask()) is not None:
        made.append(pop)
        planner.tell(pop.id, score(pop))
    return made


def test_a_fixed_plan_is_whole_before_anyone_asks_and_ask_hands_it_out_once():
    planner = Planner(parse_spec(tiny_spec_dict()))
    planned = list(planner.populations)
    assert not planner.adaptive and len(planner.lanes) == 14
    seen = []
    planner.subscribe(seen.append)  # a late subscriber hears the whole plan
    assert seen == planned
    assert drain(planner) == planned and planner.ask() is None


def test_tpe_makes_one_population_per_point_with_every_seed_and_numbered_lanes():
    spec = tpe_spec()
    planner = Planner(spec)
    heard = []
    planner.subscribe(heard.append)
    assert planner.adaptive and planner.populations == [] and planner.expected_lanes == 12
    made = drain(planner)
    assert len(made) == 6 and heard == made and planner.ask() is None
    assert [lane.index for lane in planner.lanes] == list(range(12))
    for pop in made:
        assert sorted(lane.seed for lane in pop.lanes) == [0, 1]
        assert len({(lane.learning_rate, lane.optimizer) for lane in pop.lanes}) == 1
        assert all(1e-4 <= lane.learning_rate <= 1.0 for lane in pop.lanes)
        if pop.optimizer == "momentum":
            assert {lane.optimizer_args["momentum"] for lane in pop.lanes} <= {0.8, 0.9}
    assert len({pop.id for pop in made}) == 6


def test_tpe_learns_from_what_it_is_told():
    """Told that low LRs are good, TPE's later proposals move there (with a random start of
    Optuna's default 10 startup trials, then model-based ones)."""
    spec = tpe_spec(num_samples=40, seeds=(0,), optimizer=["sgd"], optimizer_args={})
    planner = Planner(spec)
    made = drain(planner, score=lambda pop: np.array([math.log10(pop.lanes[0].learning_rate)]))
    lrs = [pop.lanes[0].learning_rate for pop in made]
    early, late = np.median(np.log10(lrs[:10])), np.median(np.log10(lrs[-10:]))
    assert late < early - 0.5


def test_scores_are_numbers_even_when_lanes_diverge():
    assert trial_score("tpe", np.array([1.0, np.nan])) == BAD_SCORE
    assert trial_score("tpe", np.array([1.0, 3.0])) == 2.0
    assert trial_score("grid", np.array([np.inf, 3.0, 2.0])) == 2.0
    assert trial_score("grid", np.array([np.nan])) == BAD_SCORE


def test_an_adaptive_plan_resumes_from_plan_json(tmp_path):
    spec = tpe_spec(num_samples=5)
    first = Planner(spec)
    first.persist(tmp_path / "plan.json")
    told = first.ask()
    first.tell(told.id, np.array([0.5, 0.7]))
    pending = first.ask()  # asked, never told: its trial was still running

    second = Planner(spec)
    second.persist(tmp_path / "plan.json", resume=True)
    assert [p.id for p in second.populations] == [told.id, pending.id]
    assert second.populations == first.populations
    assert isinstance(second.searcher, TpeSearcher)
    assert [h["score"] for h in second.searcher.history] == [0.6, None]
    second.tell(pending.id, np.array([0.2, 0.4]))  # the resumed trial's score still lands
    rest = drain(second)
    assert len(rest) == 3 and len(second.populations) == 5
    assert [lane.index for lane in second.lanes] == list(range(10))
