"""Per-optimizer LR ranges: `search.optimizer: [{name: sgd, learning_rate: {...}}, adam]`.

An entry is a name or a mapping (name, optional learning_rate, optional optimizer_args); the
planner gives each optimizer its own range, and a plain list of names plans as before."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from conftest import tiny_spec_dict
from typer.testing import CliRunner

from sweeps.errors import SpecError
from sweeps.plan.planner import Planner, expand_lanes
from sweeps.plan.search import TpeSearcher
from sweeps.spec import parse_spec, spec_to_json

SGD_OWN = {"name": "sgd", "learning_rate": {"min": 1e-3, "max": 10.0, "num": 9}}


def make_spec(search: dict, seeds=(0,)):
    raw = tiny_spec_dict()
    raw["search"] = {**raw["search"], **search}
    raw["train"]["seeds"] = list(seeds)
    return parse_spec(raw)


def lrs_of(lanes, optimizer):
    return sorted({lane.learning_rate for lane in lanes if lane.optimizer == optimizer})


def test_grid_gives_each_optimizer_its_own_range():
    spec = make_spec({"optimizer": [SGD_OWN, "adam"]}, seeds=(0, 1))
    lanes = expand_lanes(spec)
    assert lrs_of(lanes, "sgd") == pytest.approx(list(np.geomspace(1e-3, 10.0, 9)))
    # adam keeps the search's range (tiny spec: 1e-4 .. 100, 7 points)
    assert lrs_of(lanes, "adam") == pytest.approx(list(np.geomspace(1e-4, 100.0, 7)))
    assert len(lanes) == spec.lane_count() == (9 + 7) * 2
    assert spec.search.optimizer_names == ["sgd", "adam"]


def test_a_plain_list_of_names_plans_as_before():
    plain = expand_lanes(make_spec({"optimizer": ["sgd", "adam"]}))
    same = expand_lanes(make_spec({"optimizer": [{"name": "sgd"}, {"name": "adam"}]}))
    key = [(la.optimizer, la.learning_rate, la.seed, la.optimizer_args) for la in plain]
    assert key == [(la.optimizer, la.learning_rate, la.seed, la.optimizer_args) for la in same]


def test_own_optimizer_args_go_on_top_of_the_searchs():
    spec = make_spec(
        {
            "learning_rate": {"min": 1e-3, "max": 1e-1, "num": 2},
            "optimizer": [{"name": "momentum", "optimizer_args": {"momentum": [0.5, 0.9]}}, "adam"],
            "optimizer_args": {"momentum": 0.7, "b1": 0.8},
        }
    )
    lanes = expand_lanes(spec)
    momenta = sorted({la.optimizer_args["momentum"] for la in lanes if la.optimizer == "momentum"})
    assert momenta == [0.5, 0.9]  # its own list, not the search's 0.7
    assert {la.optimizer_args["b1"] for la in lanes if la.optimizer == "adam"} == {0.8}
    assert len(lanes) == spec.lane_count() == 2 * 2 + 2


def test_random_and_tpe_draw_each_optimizers_lr_from_its_range():
    own = {"name": "sgd", "learning_rate": {"min": 1.0, "max": 10.0}}
    search = {"optimizer": [own, "adam"], "learning_rate": {"min": 1e-5, "max": 1e-4}}
    lanes = expand_lanes(make_spec({**search, "method": "random", "num_samples": 40}))
    assert lrs_of(lanes, "sgd") and all(1.0 <= lr <= 10.0 for lr in lrs_of(lanes, "sgd"))
    assert lrs_of(lanes, "adam") and all(1e-5 <= lr <= 1e-4 for lr in lrs_of(lanes, "adam"))
    tpe = TpeSearcher(make_spec({**search, "method": "tpe", "num_samples": 12}))
    points = []
    for i in range(12):
        (key, point), = tpe.ask()  # fmt: skip
        points.append(point)
        tpe.tell(key, float(i))
    for p in points:
        lo, hi = (1.0, 10.0) if p.optimizer == "sgd" else (1e-5, 1e-4)
        assert lo <= p.learning_rate <= hi, p


def test_the_spec_round_trips_through_json():
    spec = make_spec({"optimizer": [SGD_OWN, "adam"]})
    again = parse_spec(json.loads(spec_to_json(spec)))
    assert again == spec and again.search.lr_range("sgd").max == 10.0


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "sgdx"}, "search.optimizer.0.name: unknown optimizer 'sgdx'"),
        ({"learning_rate": {"min": 1e-3, "max": 1.0}}, "search.optimizer.0.name: Field required"),
        ({"name": "sgd", "lr": {"min": 1.0}}, "search.optimizer.0.lr: unknown key"),
        (
            {"name": "sgd", "learning_rate": {"min": 10.0, "max": 1.0}},
            "search.optimizer.0.learning_rate: min (10.0) must be smaller than max (1.0)",
        ),
        (
            {"name": "sgd", "learning_rate": {"min": "1e-3", "max": 1.0}},
            "search.optimizer.0.learning_rate.min: Input should be a valid number",
        ),
        (
            {"name": "adam", "optimizer_args": {"momentum": 0.9}},
            "search.optimizer.0.optimizer_args: adam takes no argument 'momentum'; valid: b1",
        ),
        (
            {"name": "prodigy", "learning_rate": {"min": 1.0, "max": 10.0}},
            "search.optimizer.0.learning_rate: prodigy sets its own step size",
        ),
        (3, "search.optimizer.0: Input should be a valid string"),
    ],
)
def test_bad_entries_are_refused_by_field(entry, message):
    with pytest.raises(SpecError) as err:
        make_spec({"optimizer": [entry, "sgd" if entry != 3 else "adam"]})
    assert any(line.startswith(message) for line in err.value.errors), err.value.errors


def test_an_optimizer_named_twice_is_refused():
    with pytest.raises(SpecError, match="search.optimizer: optimizer names must be distinct"):
        make_spec({"optimizer": ["sgd", {"name": "sgd", "learning_rate": {"min": 1, "max": 2}}]})


def test_validate_exits_2_naming_the_field(tmp_path):
    from sweeps.cli import app

    raw = tiny_spec_dict()
    raw["search"]["optimizer"] = [{"name": "sgd", "learning_rate": {"min": 0, "max": 1}}]
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "search.optimizer.0.learning_rate.min" in result.output
    assert "Traceback" not in result.output


def test_a_sweep_with_per_optimizer_ranges_runs_inline(tmp_path):
    """End to end: each group's curve spans its own optimizer's range, and the report's lanes
    are the planner's."""
    from sweeps.pipeline import prepare, run_sweep

    raw = tiny_spec_dict(name="per-optimizer")
    raw["train"].update(steps=10, eval_every=10)
    raw["search"].update(
        learning_rate={"min": 1e-3, "max": 1e-2, "num": 2},
        optimizer=[{"name": "sgd", "learning_rate": {"min": 0.1, "max": 1.0, "num": 3}}, "adam"],
    )
    prepared = prepare(parse_spec(raw))
    report = run_sweep(prepared, tmp_path / "out", executor="inline", track=False)
    curves = {g["optimizer"]: g["curve"]["learning_rate"] for g in report["groups"]}
    assert curves["sgd"] == pytest.approx([0.1, 10**-0.5, 1.0])
    assert curves["adam"] == pytest.approx([1e-3, 1e-2])
    assert len(report["lanes"]) == len(Planner(parse_spec(raw)).lanes) == 5
