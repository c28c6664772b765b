"""The LR range test: its pieces against closed forms, and the whole on real data."""

from __future__ import annotations

import numpy as np
from conftest import tiny_spec_dict

from sweeps.core.lrfind import RangeTestConfig, ramp, smooth, steepest, stop_index, valley
from sweeps.lrfind import config_for, lr_find
from sweeps.pipeline import load_sweep_data
from sweeps.spec import parse_spec


def test_smoothing_is_a_bias_corrected_ema():
    # A constant loss stays exactly constant after bias correction (no warm-up sag).
    np.testing.assert_allclose(smooth(np.full(50, 3.0), 0.98), 3.0)
    # Closed form for two steps: (b(1-b)x0 + (1-b)x1) / (1 - b^2)
    b, x0, x1 = 0.9, 1.0, 2.0
    assert smooth(np.array([x0, x1]), b)[1] == np.float64(
        (b * (1 - b) * x0 + (1 - b) * x1) / (1 - b**2)
    )


def test_stop_at_four_times_the_best_or_non_finite():
    assert stop_index(np.array([2.0, 1.0, 0.5, 1.9, 2.1]), 4.0) == 4
    assert stop_index(np.array([2.0, 1.0, np.inf]), 4.0) == 2
    assert stop_index(np.array([2.0, 1.0, 0.9]), 4.0) is None


def test_suggestions_on_a_known_curve():
    lrs = np.geomspace(1e-6, 1, 100)
    x = np.log10(lrs)
    # Flat, then a descent centred at 1e-3 (steepest there), then a rise after 1e-1.
    curve = 2.0 - np.tanh((x + 3) * 1.5) + np.where(x > -1, (x + 1) ** 2 * 5, 0)
    s = steepest(lrs, curve, 10, 1)
    assert 5e-4 < s < 2e-3
    # The valley lies inside the one long descent, between its start and the minimum.
    v = valley(lrs, curve)
    assert lrs[0] < v < lrs[np.argmin(curve)]
    # A noisy flat start breaks the descent: the valley moves into the real drop.
    noisy = curve + np.where(x < -4, 0.05 * (np.arange(100) % 2), 0)
    assert 1e-4 < valley(lrs, noisy) < lrs[np.argmin(curve)]


def test_ramp_and_config_defaults():
    spec = parse_spec(tiny_spec_dict(search={"optimizer": ["adam"]}))
    assert config_for(spec) == RangeTestConfig()  # 1e-8 -> 1 when the spec gives no range
    spec = parse_spec(tiny_spec_dict())
    assert (config_for(spec).min_lr, config_for(spec).max_lr) == (1e-4, 100.0)
    lrs = ramp(RangeTestConfig(min_lr=1e-8, max_lr=1.0, steps=100))
    assert lrs[0] == 1e-8 and np.isclose(lrs[-1], 1.0)


def test_lr_find_on_digits_suggests_sane_rates_for_sgd_and_adam():
    spec = parse_spec(
        tiny_spec_dict(
            data={"name": "digits"},
            model={"name": "mlp", "hidden": [32]},
            train={"steps": 100, "batch_size": 64, "eval_every": 10, "seeds": [0, 1]},
            search={"optimizer": ["sgd", "adam", "prodigy"]},
        )
    )
    result = lr_find(
        spec, load_sweep_data(spec), RangeTestConfig(min_lr=1e-6, max_lr=10.0, steps=80)
    )
    assert {c["optimizer"] for c in result["curves"]} == {"sgd", "adam"}  # LR-free skipped
    assert len(result["curves"]) == 4
    adam, sgd = result["suggestions"]["adam"], result["suggestions"]["sgd"]
    # Adam's useful LRs sit well below SGD's on this problem; both are far from the ends.
    assert 1e-4 < adam["valley"] < 1e-1
    assert 1e-3 < sgd["valley"] < 5.0
    assert adam["valley"] < sgd["valley"]
    # Ramping to 10 blows up: the curve stops before the end.
    assert all(c["stopped_at"] is not None for c in result["curves"])
