"""Refinement rounds against the closed form: full-batch GD and heavy ball on least squares.

GD diverges iff lr > 2/lambda_max, heavy ball iff lr > 2(1 + beta)/lambda_max. From a coarse
grid of 7 LRs over 6 decades (a step of 10x), `refine.ratio: 1.1` must bracket the threshold
within 1.1, for at most half the lane-steps of a dense ratio-1.12 grid over the same range,
and the later rounds must compile nothing (they reuse round 1's programs).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_spec_dict

from sweeps.core.program import forget_programs
from sweeps.exec.inline import InlineExecutor
from sweeps.pipeline import load_sweep_data
from sweeps.plan.planner import Planner
from sweeps.plan.refine import dense_count
from sweeps.spec import parse_spec
from sweeps.stream import Dispatcher
from sweeps.verdict.analysis import analyze, analyze_for
from sweeps.verdict.report import lane_steps, lane_steps_dense

BETA = 0.9
LR_MIN, LR_MAX, STEPS = 1e-4, 100.0, 150


def spec_for(refine: dict | None):
    raw = tiny_spec_dict(name="least-squares")
    search = {
        "learning_rate": {"min": LR_MIN, "max": LR_MAX, "num": 7, "scale": "log"},
        "optimizer": ["sgd", "momentum"],
        "optimizer_args": {"momentum": BETA},
    }
    if refine:
        search["refine"] = refine
    raw.update(
        data={"name": "linear", "val_fraction": 0.0},
        model={"name": "linear"},
        loss="mse",
        train={"steps": STEPS, "batch_size": "full", "eval_every": 10, "seeds": [0]},
        search=search,
    )
    return parse_spec(raw)


def run(spec, data):
    planner = Planner(spec)
    dispatcher = Dispatcher(spec.metric_name, spec.train.steps, 0, planner.expected_lanes)
    planner.subscribe(dispatcher.add_population)
    planner.follow(dispatcher, analyze_for)
    forget_programs()  # count this sweep's compiles only
    timing = InlineExecutor(spec, data).run(planner, dispatcher)
    results = dispatcher.results()
    verdicts, _ = analyze(results, loss="mse")
    return planner, timing, results, {v.optimizer: v for v in verdicts}


@pytest.fixture(scope="module")
def refined():
    spec = spec_for({"ratio": 1.1, "max_rounds": 4})
    data = load_sweep_data(spec)
    a = np.hstack([np.asarray(data.x_train, float), np.ones((data.n_train, 1))])
    lambda_max = float(np.linalg.eigvalsh(2.0 / data.n_train * a.T @ a).max())
    return lambda_max, *run(spec, data)


@pytest.mark.parametrize(("optimizer", "factor"), [("sgd", 2.0), ("momentum", 2.0 * (1 + BETA))])
def test_refined_edge_brackets_the_closed_form_within_the_ratio(refined, optimizer, factor):
    lambda_max, planner, _, _, verdicts = refined
    v = verdicts[optimizer]
    threshold = factor / lambda_max
    assert v.max_stable_lr <= threshold < v.min_diverged_lr
    assert v.edge_ratio == pytest.approx(v.min_diverged_lr / v.max_undiverged_lr)
    assert v.edge_ratio <= 1.1
    assert v.rounds > 1 and v.rounds <= 4
    lo, hi = v.best_lr_bracket
    assert lo <= v.best_lr <= hi


def test_refinement_costs_at_most_half_a_dense_grid_and_no_compile(refined):
    _, planner, timing, results, verdicts = refined
    dense = 2 * dense_count(LR_MIN, LR_MAX, 1.12) * STEPS  # two groups, one seed
    assert lane_steps(results) <= 0.5 * dense
    assert lane_steps_dense(list(verdicts.values()), results, STEPS) > lane_steps(results)
    assert timing.compiles == 2 * 3  # init, eval, chunk per structure: round 1's only
    later = [p for p in planner.populations if p.lanes[0].round > 1]
    assert later and all(p.width == 7 for p in later)  # round 1: 7 lanes, one slice of 7
    assert {lane.round for lane in planner.lanes} == set(range(1, planner.round + 1))


def test_the_coarse_grid_alone_is_not_that_precise():
    spec = spec_for(None)
    _, _, _, verdicts = run(spec, load_sweep_data(spec))
    assert verdicts["sgd"].edge_ratio == pytest.approx(10.0)
    assert verdicts["sgd"].rounds == 1
