"""The verdict on real data: SGD on digits over a wide grid stagnates at the bottom,
diverges at the top, and has a Goldilocks zone in between."""

from __future__ import annotations

from conftest import tiny_spec_dict

from sweeps.exec.inline import train_inline
from sweeps.pipeline import prepare
from sweeps.spec import parse_spec
from sweeps.verdict.analysis import analyze


def test_sgd_on_digits_stagnates_low_diverges_high_with_a_zone_between():
    spec = parse_spec(
        tiny_spec_dict(
            data={"name": "digits", "val_fraction": 0.2},
            model={"name": "mlp", "hidden": [32]},
            train={"steps": 150, "batch_size": 64, "eval_every": 25, "seeds": [0]},
            search={
                "learning_rate": {"min": 1e-5, "max": 1e3, "num": 9, "scale": "log"},
                "optimizer": ["sgd"],
            },
        )
    )
    prepared = prepare(spec)
    results = train_inline(spec, prepared.data)
    (verdict,), winner = analyze(results, loss=spec.loss)
    by_lr = {r.lane.learning_rate: r for r in results}
    lrs = sorted(by_lr)

    assert by_lr[lrs[0]].status == "stagnated"
    assert by_lr[lrs[-1]].status == "diverged"
    assert by_lr[lrs[-1]].diverged_at_step is not None
    assert verdict.zone is not None
    assert lrs[0] < verdict.zone["low"] <= verdict.best_lr <= verdict.zone["high"] < lrs[-1]
    assert verdict.max_stable_lr < verdict.min_diverged_lr
    assert verdict.edge is None
    # The best lane really learned the task (10 classes: chance is 0.1).
    assert winner.best_val_metric > 0.85
