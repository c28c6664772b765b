"""Pruning inside a population on Ray: the trial stops the lanes the inline executor stops, at
the same rungs, with the same numbers (the prune state rides the TrialPoint wire format)."""

from __future__ import annotations

import numpy as np
from conftest import tiny_spec_dict

from sweeps.exec.inline import train_inline
from sweeps.pipeline import prepare, run_sweep
from sweeps.spec import parse_spec


def test_a_pruned_sweep_on_ray_stops_the_inline_lanes(local_ray, tmp_path):
    spec = parse_spec(
        tiny_spec_dict(
            train={"steps": 40, "batch_size": 32, "eval_every": 10, "seeds": [0, 1]},
            search={
                "learning_rate": {"min": 1e-5, "max": 100.0, "num": 8},
                "optimizer": ["sgd"],
                "prune": {"at": [0.25, 0.5]},
            },
        )
    )
    prepared = prepare(spec)
    report = run_sweep(prepared, tmp_path / "sweep", executor="ray", track=False)
    inline = train_inline(spec, prepared.data)
    assert any(r.pruned_at_step is not None for r in inline)  # something was stopped
    assert any(lane["status"] == "pruned" for lane in report["lanes"])
    assert [(r.lane.learning_rate, r.lane.seed, r.pruned_at_step) for r in inline] == [
        (lane["learning_rate"], lane["seed"], lane["pruned_at_step"]) for lane in report["lanes"]
    ]
    np.testing.assert_allclose(
        [
            np.inf if lane["best_val_loss"] is None else lane["best_val_loss"]
            for lane in report["lanes"]
        ],
        [r.best_val_loss if np.isfinite(r.best_val_loss) else np.inf for r in inline],
        rtol=1e-5,
    )
