"""Budgets refuse what cannot run before anything is created, naming the field and numbers."""

from __future__ import annotations

import pytest
import yaml
from conftest import tiny_spec_dict
from typer.testing import CliRunner

from sweeps.budget import estimate_trial_bytes
from sweeps.cli import app
from sweeps.errors import SpecError
from sweeps.pipeline import prepare
from sweeps.settings import get_settings
from sweeps.spec import parse_spec


def _prepare(**change):
    return prepare(parse_spec(tiny_spec_dict(**change)))


def _refused(**change) -> str:
    with pytest.raises(SpecError) as err:
        _prepare(**change)
    return str(err.value)


def test_steps_and_lane_steps_have_caps():
    text = _refused(train={"steps": 10**12, "batch_size": 32, "eval_every": 10})
    assert "train.steps: 1,000,000,000,000 is above the cap of 10,000,000" in text
    assert "14 lanes x 1,000,000,000,000 steps = 14,000,000,000,000 lane-steps" in text


def test_caps_are_settings(monkeypatch):
    monkeypatch.setenv("GOLDILOCKS_MAX_LANE_STEPS", "500")
    get_settings.cache_clear()
    try:
        text = _refused()  # 14 lanes x 40 steps = 560
        assert "560 lane-steps, above the cap of 500 (GOLDILOCKS_MAX_LANE_STEPS)" in text
    finally:
        monkeypatch.delenv("GOLDILOCKS_MAX_LANE_STEPS")
        get_settings.cache_clear()


def test_a_model_that_cannot_fit_is_refused_naming_model_and_the_estimate():
    text = _refused(model={"name": "mlp", "hidden": [100000, 100000]})
    assert "model: one trial needs about 1120.6 GB (7 lanes x 1e+10 parameters" in text


def test_the_estimate_counts_parameters_exactly_and_scales_with_lanes():
    # iris: 4 features, mlp [16], 3 classes: 4*16 + 16 + 16*3 + 3 = 131 parameters
    small = _prepare()
    est = estimate_trial_bytes(small.spec, small.data, small.planner, get_settings())
    assert est["params"] == 131 and est["lanes"] == 7
    assert est["state"] == 4 * 131 * (2 + 2) * 7  # float32 x (params, grads, adam's 2 moments)
    wide = prepare(parse_spec({**tiny_spec_dict(), "resources": {"max_lanes_per_trial": 3}}))
    assert estimate_trial_bytes(wide.spec, wide.data, wide.planner, get_settings())["lanes"] == 3


def test_the_cli_exits_2_and_writes_nothing(tmp_path):
    raw = tiny_spec_dict(train={"steps": 10**12, "batch_size": 32, "eval_every": 10})
    spec = tmp_path / "big.yaml"
    spec.write_text(yaml.safe_dump(raw))
    for args in (["validate", str(spec)], ["run", str(spec), "--out", str(tmp_path / "out")]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "train.steps: 1,000,000,000,000 is above the cap" in result.stderr
    assert list(tmp_path.iterdir()) == [spec]
