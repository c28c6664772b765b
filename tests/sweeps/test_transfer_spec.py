"""The `transfer` section: strict, and in agreement with train.steps and eval_every."""

from __future__ import annotations

import pytest
from conftest import tiny_spec_dict

from sweeps.core.schedules import HORIZON
from sweeps.plan.planner import Planner
from sweeps.spec import SpecError, parse_spec


def _spec(transfer, train=None):
    train = train or {"batch_size": 32, "eval_every": 10, "seeds": [0]}
    return tiny_spec_dict(transfer=transfer, train=train)


def _errors(raw) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(raw)
    return str(info.value)


def test_train_steps_left_out_is_the_longest_horizon():
    spec = parse_spec(_spec({"steps": {"values": [40, 20], "target": 400}}))
    assert spec.train.steps == 40 and spec.transfer.steps.values == [20, 40]
    verify = parse_spec(_spec({"steps": {"values": [20, 40], "target": 80}, "verify": True}))
    assert verify.train.steps == 80 and verify.transfer.horizons() == [20, 40, 80]


def test_a_spec_naming_both_must_agree():
    train = {"steps": 50, "batch_size": 32, "eval_every": 10}
    assert "train.steps: 50 is not the longest horizon" in _errors(
        _spec({"steps": {"values": [20, 40], "target": 400}}, train)
    )
    train["steps"] = 40
    assert parse_spec(_spec({"steps": {"values": [20, 40], "target": 400}}, train))


def test_horizons_must_be_multiples_of_eval_every():
    text = _errors(_spec({"steps": {"values": [20, 45], "target": 400}}))
    assert "transfer.steps.values: 45 is not a multiple of train.eval_every (10)" in text
    text = _errors(_spec({"steps": {"values": [20, 40], "target": 85}, "verify": True}))
    assert "transfer.steps.target: 85" in text


@pytest.mark.parametrize(
    ("axis", "field"),
    [
        ({"values": [20], "target": 40}, "transfer.steps.values"),
        ({"values": [20, 20], "target": 40}, "transfer.steps"),
        ({"values": [20, "40"], "target": 40}, "transfer.steps.values.1"),
        ({"values": [20, 40], "target": 40, "targt": 1}, "transfer.steps.targt"),
    ],
)
def test_bad_axes_name_their_field(axis, field):
    assert field in _errors(_spec({"steps": axis}))


def test_tpe_is_refused():
    raw = _spec({"steps": {"values": [20, 40], "target": 400}})
    raw["search"] = {**raw["search"], "method": "tpe"}
    assert "transfer: needs search.method grid or random" in _errors(raw)


def test_every_point_is_planned_once_per_horizon_in_one_population_per_structure():
    spec = parse_spec(_spec({"steps": {"values": [20, 30, 40], "target": 400}}))
    planner = Planner(spec)
    assert spec.lane_count() == len(planner.lanes) == 7 * 2 * 3
    assert {lane.schedule_args[HORIZON] for lane in planner.lanes} == {20.0, 30.0, 40.0}
    assert len(planner.populations) == 2  # sgd and adam: the horizons share them


def test_the_batch_size_axis_is_one_population_per_batch_size(iris):
    from sweeps.exec.trial import structure_for

    raw = _spec({"batch_size": {"values": [16, 32], "target": 128}, "verify": True},
                {"steps": 40, "eval_every": 10})  # fmt: skip
    spec = parse_spec(raw)
    assert spec.train.batch_size == 128  # the largest trained: budgets check the worst case
    planner = Planner(spec)
    assert spec.lane_count() == len(planner.lanes) == 7 * 2 * 3
    sizes = sorted((p.optimizer, p.batch_size) for p in planner.populations)
    assert sizes == [(o, b) for o in ("adam", "sgd") for b in (16, 32, 128)]
    for pop in planner.populations:
        assert structure_for(spec, pop, iris).batch_size == pop.batch_size
        assert {lane.batch_size for lane in pop.lanes} == {pop.batch_size}
    keys = {lane.group_key for lane in planner.lanes}
    assert len(keys) == 2 * 3  # a verdict group per optimizer and batch size


def test_one_axis_at_a_time_and_train_batch_size_agrees():
    both = {"steps": {"values": [20, 40], "target": 80},
            "batch_size": {"values": [16, 32], "target": 64}}  # fmt: skip
    assert "give one axis" in _errors(_spec(both))
    train = {"steps": 40, "batch_size": 16, "eval_every": 10}
    text = _errors(_spec({"batch_size": {"values": [16, 32], "target": 64}}, train))
    assert "train.batch_size: 16 is not the largest batch trained, 32" in text


def test_the_width_axis_sets_a_model_argument_per_population(iris):
    from sweeps.exec.trial import structure_for

    raw = _spec({"width": {"arg": "d_model", "values": [16, 32], "target": 64}},
                {"steps": 40, "eval_every": 10})  # fmt: skip
    raw["model"] = {"name": "transformer", "n_heads": 2}
    spec = parse_spec(raw)
    assert spec.model.d_model == 32  # the widest trained: what the budgets check
    planner = Planner(spec)
    assert {p.model_width for p in planner.populations} == {16, 32}
    for pop in planner.populations:
        assert structure_for(spec, pop, iris).model.d_model == pop.model_width
        assert structure_for(spec, pop, iris).model.n_heads == 2


def test_a_width_argument_the_model_lacks_or_refuses_is_named():
    raw = _spec({"width": {"arg": "depth", "values": [16, 32], "target": 64}},
                {"steps": 40, "eval_every": 10})  # fmt: skip
    assert "transfer.width.arg: the mlp model has no argument 'depth' (it takes: hidden" in (
        _errors(raw)
    )
    raw["model"] = {"name": "transformer", "d_model": 16}
    raw["transfer"]["width"]["arg"] = "d_model"
    assert "model.d_model: 16 is not the largest width trained, 32" in _errors(raw)


def test_progress_counts_each_lane_to_its_own_horizon():
    from sweeps.stream import Dispatcher

    spec = parse_spec(_spec({"steps": {"values": [20, 40], "target": 400}}))
    planner = Planner(spec)
    dispatcher = Dispatcher(spec.metric_name, spec.train.steps, planner.expected_trials,
                            planner.expected_lanes)  # fmt: skip
    planner.subscribe(dispatcher.add_population)
    assert dispatcher.progress.lane_steps_total == 7 * 2 * (20 + 40)
