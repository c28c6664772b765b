"""Pruning inside a population through the whole pipeline, inline: a pruned lane's status,
its report fields and its MLflow run (FINISHED, tagged), and a verdict equal to the same sweep
unpruned."""

from __future__ import annotations

import pytest
from conftest import tiny_spec_dict
from mlflow.tracking import MlflowClient

from sweeps.pipeline import prepare, run_sweep
from sweeps.spec import parse_spec


def spec_with(prune):
    search = {
        "learning_rate": {"min": 1e-5, "max": 100.0, "num": 8},
        "optimizer": ["sgd", "adam"],
    }
    if prune:
        search["prune"] = {"at": [0.25, 0.5]}
    return parse_spec(
        tiny_spec_dict(
            train={"steps": 40, "batch_size": 32, "eval_every": 10, "seeds": [0, 1]},
            search=search,
        )
    )


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prune")
    uri = f"sqlite:///{tmp}/mlflow.db"
    pruned = run_sweep(prepare(spec_with(True)), tmp / "p", executor="inline", tracking_uri=uri)
    dense = run_sweep(prepare(spec_with(False)), tmp / "d", executor="inline", tracking_uri=None)
    return pruned, dense, uri


def test_pruned_lanes_are_reported_truthfully(sweeps):
    pruned, dense, _ = sweeps
    stopped = [lane for lane in pruned["lanes"] if lane["pruned_at_step"] is not None]
    assert any(lane["status"] == "pruned" for lane in stopped)
    assert {lane["pruned_at_step"] for lane in stopped} <= {10, 20}
    for lane in stopped:
        assert lane["status"] in ("pruned", "diverged")
    for lane in pruned["lanes"]:
        assert (lane["status"] == "pruned") <= (lane["pruned_at_step"] is not None)
    assert pruned["timing"]["lane_steps"] < dense["timing"]["lane_steps"]


def test_pruning_changes_no_verdict(sweeps):
    pruned, dense, _ = sweeps
    keys = ("best_lr", "zone", "max_stable_lr", "min_diverged_lr", "edge")
    got = {(g["optimizer"], g["schedule"]): {k: g[k] for k in keys} for g in pruned["groups"]}
    want = {(g["optimizer"], g["schedule"]): {k: g[k] for k in keys} for g in dense["groups"]}
    assert got == want


def test_a_pruned_lane_run_ends_finished_with_its_rung(sweeps):
    pruned, _, uri = sweeps
    client = MlflowClient(uri)
    stopped = [lane for lane in pruned["lanes"] if lane["pruned_at_step"] is not None]
    for lane in stopped:
        run = client.get_run(lane["run_id"])
        assert run.info.status == "FINISHED"
        assert run.data.tags["pruned_at_step"] == str(lane["pruned_at_step"])
        steps = [m.step for m in client.get_metric_history(lane["run_id"], "val_loss")]
        assert max(steps) <= lane["pruned_at_step"]  # its history stops at the rung
        if lane["status"] == "pruned":  # (a diverged lane's NaN losses are not logged)
            assert max(steps) == lane["pruned_at_step"]
    kept = next(lane for lane in pruned["lanes"] if lane["pruned_at_step"] is None)
    assert "pruned_at_step" not in client.get_run(kept["run_id"]).data.tags
