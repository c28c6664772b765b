"""Refinement rounds on Ray: each round's populations are new trials, asked of the driver's
planner once the round before has ended; the lanes and numbers are the inline ones."""

from __future__ import annotations

import numpy as np
from conftest import tiny_spec_dict

from sweeps.exec.inline import train_inline
from sweeps.pipeline import prepare, run_sweep
from sweeps.spec import parse_spec


def test_a_refined_grid_on_ray_trains_the_inline_rounds(local_ray, tmp_path):
    spec = parse_spec(
        tiny_spec_dict(
            train={"steps": 20, "batch_size": 32, "eval_every": 10, "seeds": [0]},
            search={
                "learning_rate": {"min": 1e-3, "max": 100.0, "num": 6},
                "optimizer": ["sgd"],
                "refine": {"ratio": 2.0, "max_rounds": 3},
            },
        )
    )
    prepared = prepare(spec)
    report = run_sweep(prepared, tmp_path / "sweep", executor="ray", track=False)
    (g,) = report["groups"]
    assert g["rounds"] > 1
    # one trial per population, a later round's in trials of their own
    trials = {lane["trial_id"] for lane in report["lanes"]}
    assert trials == {p.id for p in prepared.planner.populations} and len(trials) == g["rounds"]
    inline = train_inline(spec, prepared.data)
    assert [(r.lane.learning_rate, r.lane.round) for r in inline] == [
        (lane["learning_rate"], lane["round"]) for lane in report["lanes"]
    ]
    np.testing.assert_allclose(
        [
            np.inf if lane["best_val_loss"] is None else lane["best_val_loss"]
            for lane in report["lanes"]
        ],
        [r.best_val_loss if np.isfinite(r.best_val_loss) else np.inf for r in inline],
        rtol=1e-5,
    )
