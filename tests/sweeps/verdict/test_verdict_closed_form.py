"""The verdict against closed forms: full-batch gradient descent on least squares.

The loss is a quadratic with Hessian H = (2/n) A^T A (A = [X, 1], mse as a mean). GD
diverges iff lr > 2/lambda_max, heavy ball iff lr > 2(1 + beta)/lambda_max: the stability edge
the verdict reports must bracket these within one grid step. A warmup-cosine schedule spends
only a few steps near its peak, so it survives peak LRs above 2/lambda_max that a constant
schedule does not: the verdict must show the higher edge.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_spec_dict

from sweeps.exec.inline import train_inline
from sweeps.pipeline import load_sweep_data
from sweeps.spec import parse_spec
from sweeps.verdict.analysis import analyze

BETA = 0.9
OFFSET = 1.1


def least_squares_spec(lr_min, lr_max, num, optimizer, schedules=("constant",), steps=150):
    raw = tiny_spec_dict(name="least-squares")
    raw.update(
        data={"name": "linear", "val_fraction": 0.0},
        model={"name": "linear"},
        loss="mse",
        train={"steps": steps, "batch_size": "full", "eval_every": 10, "seeds": [0]},
        search={
            "learning_rate": {"min": lr_min, "max": lr_max, "num": num, "scale": "log"},
            "optimizer": [optimizer],
            "schedule": list(schedules),
            "optimizer_args": {"momentum": BETA},
        },
    )
    return parse_spec(raw)


@pytest.fixture(scope="module")
def lambda_max():
    spec = least_squares_spec(0.1, 1.0, 2, "sgd")
    data = load_sweep_data(spec)
    a = np.hstack([np.asarray(data.x_train, float), np.ones((data.n_train, 1))])
    return float(np.linalg.eigvalsh(2.0 / data.n_train * a.T @ a).max())


def verdicts_for(spec):
    results = train_inline(spec, load_sweep_data(spec))
    verdicts, _ = analyze(results, loss=spec.loss)
    return {v.schedule: v for v in verdicts}


@pytest.mark.parametrize(("optimizer", "factor"), [("sgd", 2.0), ("momentum", 2.0 * (1 + BETA))])
def test_the_stability_edge_brackets_the_closed_form(lambda_max, optimizer, factor):
    threshold = factor / lambda_max
    # ratio 1.26 between LRs; shifted so that no LR sits exactly on the (marginal) threshold
    spec = least_squares_spec(threshold / 4 * OFFSET, threshold * 4 * OFFSET, 13, optimizer)
    v = verdicts_for(spec)["constant"]
    assert v.max_stable_lr is not None and v.min_diverged_lr is not None
    below = max(lr for lr in v.curve["learning_rate"] if lr < v.min_diverged_lr)
    assert below <= threshold < v.min_diverged_lr
    assert v.min_diverged_lr / below == pytest.approx(16 ** (1 / 12), rel=1e-6)
    # Stable is the LR just below, unless it spiked: heavy ball at 0.87x its edge grows
    # transiently past 4x its initial loss before it settles (measured), so it is unstable.
    assert v.max_stable_lr == below or (v.first_unstable_lr == below and v.max_stable_lr < below)
    assert v.erratic_above_edge == []  # on a quadratic, everything above the edge blows up


def test_warmup_raises_the_largest_stable_peak_lr(lambda_max):
    threshold = 2.0 / lambda_max
    spec = least_squares_spec(
        threshold / 4 * OFFSET, threshold * 4 * OFFSET, 13, "sgd",
        schedules=("constant", "warmup_cosine"),
    )  # fmt: skip
    v = verdicts_for(spec)
    assert v["constant"].max_stable_lr <= threshold < v["constant"].min_diverged_lr
    assert v["warmup_cosine"].max_stable_lr > v["constant"].max_stable_lr
