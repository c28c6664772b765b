"""transfer on Ray: horizon lanes end at their own horizon and batch sizes are trials of their
own, with the inline numbers. (Starts Ray: the lead runs it, not the helpers.)"""

from __future__ import annotations

import numpy as np
from conftest import tiny_spec_dict

from sweeps.exec.inline import train_inline
from sweeps.pipeline import prepare, run_sweep
from sweeps.spec import parse_spec


def _spec(transfer: dict, train: dict):
    return parse_spec(
        tiny_spec_dict(
            train={**train, "eval_every": 10, "seeds": [0]},
            search={"learning_rate": {"min": 1e-3, "max": 10.0, "num": 5}, "optimizer": ["sgd"],
                    "schedule": ["cosine"]},
            transfer={**transfer, "verify": True},
        )
    )  # fmt: skip


def _same_as_inline(spec, report, data):
    inline = train_inline(spec, data)
    got = sorted(
        (lane["learning_rate"], lane["history"]["step"][-1], lane["history"]["val_loss"][-1],
         lane["batch_size"] or 0) for lane in report["lanes"]
    )  # fmt: skip
    want = sorted(
        (r.lane.learning_rate, r.step[-1], r.val_loss[-1], r.lane.batch_size or 0) for r in inline
    )
    assert [g[:2] + g[3:] for g in got] == [w[:2] + w[3:] for w in want]
    np.testing.assert_allclose([g[2] for g in got], [w[2] for w in want], rtol=1e-5)


def test_horizons_on_ray(local_ray, tmp_path):
    spec = _spec({"steps": {"values": [10, 20], "target": 40}}, {"batch_size": 32})
    prepared = prepare(spec)
    report = run_sweep(prepared, tmp_path / "sweep", executor="ray", track=False)
    assert {lane["history"]["step"][-1] for lane in report["lanes"]} == {10, 20, 40}
    assert report["transfer"]["steps"]["groups"][0]["verification"]["best_lr"] > 0
    _same_as_inline(spec, report, prepared.data)


def test_batch_sizes_on_ray(local_ray, tmp_path):
    spec = _spec({"batch_size": {"values": [8, 16], "target": 32}}, {"steps": 20})
    prepared = prepare(spec)
    report = run_sweep(prepared, tmp_path / "sweep", executor="ray", track=False)
    assert {lane["trial_id"] for lane in report["lanes"]} == {
        p.id for p in prepared.planner.populations
    }
    assert "noise_scale" in report["transfer"]["batch_size"]
    _same_as_inline(spec, report, prepared.data)
