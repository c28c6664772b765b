"""The whole pipeline through `goldilocks run` on the Ray executor with MLflow tracking on, for
every search method: one FINISHED child run per lane, the report naming exactly those runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import tiny_spec_dict
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from sweeps.cli import app

SEARCHES = {
    "grid": {"learning_rate": {"min": 1e-3, "max": 1.0, "num": 3}, "optimizer": ["adam"]},
    "random": {"method": "random", "num_samples": 4, "optimizer": ["sgd", "adam"]},
    # the case that failed before the planner made tpe's lanes: KeyError in the tracker
    "tpe": {"method": "tpe", "num_samples": 3, "optimizer": ["sgd", "adam"]},
}


@pytest.mark.parametrize("method", list(SEARCHES))
def test_every_search_method_runs_tracked_on_ray(method, local_ray, tmp_path):
    raw = tiny_spec_dict(name=f"pipeline-{method}")
    raw["train"].update(steps=20, eval_every=10, seeds=[0, 1])
    raw["search"] = {**raw["search"], **SEARCHES[method]}
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump(raw))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = tmp_path / "out"

    result = CliRunner().invoke(
        app, ["run", str(spec), "--out", str(out), "--executor", "ray", "--tracking-uri", uri]
    )
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads((out / "report.json").read_text())
    lanes = report["lanes"]
    expected = {"grid": 3 * 2, "random": 4 * 2, "tpe": 3 * 2}[method]
    assert len(lanes) == expected
    assert {lane["seed"] for lane in lanes} == {0, 1}

    client = MlflowClient(uri)
    parent = client.get_run(report["mlflow"]["parent_run_id"])
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [report["mlflow"]["experiment_id"]],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        max_results=1000,
    )
    assert len(children) == expected
    assert {r.info.status for r in children} == {"FINISHED"}
    assert {r.info.run_id for r in children} == {lane["run_id"] for lane in lanes}
    for lane in lanes:
        run = next(r for r in children if r.info.run_id == lane["run_id"])
        assert float(run.data.params["learning_rate"]) == lane["learning_rate"]
        assert run.data.tags["status"] == lane["status"]
        assert run.data.tags["goldilocks.trial_id"] == lane["trial_id"]
    # the parent carries the final report: the same run ids and verdict as the file
    logged = json.loads(
        Path(
            client.download_artifacts(parent.info.run_id, "report.json", str(tmp_path))
        ).read_text()
    )
    logged_ids = {lane["run_id"] for lane in logged["lanes"]}
    assert logged_ids == {lane["run_id"] for lane in lanes}
    assert logged["groups"] == report["groups"]
    if method == "tpe":  # each point trained over both seeds, in one trial
        by_trial: dict[str, set] = {}
        for lane in lanes:
            by_trial.setdefault(lane["trial_id"], set()).add((lane["learning_rate"], lane["seed"]))
        assert len(by_trial) == 3
        assert all(len({lr for lr, _ in v}) == 1 and len(v) == 2 for v in by_trial.values())
        plan = json.loads((out / "plan.json").read_text())
        assert len(plan["populations"]) == 3
        assert all(h["score"] is not None for h in plan["searcher"])  # every point was told


def test_tpe_runs_inline_too(tmp_path):
    raw = tiny_spec_dict(name="tpe-inline")
    raw["train"].update(steps=20, eval_every=10)
    raw["search"] = {**raw["search"], **SEARCHES["tpe"], "num_samples": 4}
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(out), "--executor", "inline"])
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads((out / "report.json").read_text())
    assert len(report["lanes"]) == 4 and len({lane["trial_id"] for lane in report["lanes"]}) == 4
    assert report["winner"] is not None


def test_a_prepared_sweep_runs_once(tmp_path):
    """Its planner hands each population out once: a second run would train nothing and end
    "succeeded" with an empty verdict, so it is refused before anything is written."""
    from sweeps.pipeline import prepare, run_sweep
    from sweeps.spec import parse_spec

    raw = tiny_spec_dict(name="once")
    raw["train"].update(steps=10, eval_every=10)
    prepared = prepare(parse_spec(raw))
    first = run_sweep(prepared, tmp_path / "first", executor="inline", track=False)
    assert len(first["lanes"]) == len(prepared.lanes) > 0
    with pytest.raises(ValueError, match="has run already"):
        run_sweep(prepared, tmp_path / "second", executor="inline", track=False)
    assert not (tmp_path / "second").exists()


def test_a_stop_while_mlflow_opens_closes_the_parent_run_killed(tmp_path, monkeypatch):
    """Ctrl-C (or a cancel's SIGTERM) while the tracker is still opening its runs: the sweep
    ends interrupted and the parent run it was creating ends KILLED, not RUNNING forever."""
    import os
    import signal

    from sweeps.errors import SweepInterrupted
    from sweeps.pipeline import prepare, run_sweep
    from sweeps.spec import parse_spec
    from sweeps.tracking.tracker import SweepTracker

    opening = SweepTracker.start

    def start_then_stop(self, **kwargs):  # runs in the start-up thread
        os.kill(os.getpid(), signal.SIGTERM)  # the main thread is waiting for this tracker
        opening(self, **kwargs)

    def stop(signum, frame):  # as `goldilocks run` handles SIGTERM (Ray Tune may own SIGINT)
        raise KeyboardInterrupt("stopped by SIGTERM")

    monkeypatch.setattr(SweepTracker, "start", start_then_stop)
    raw = tiny_spec_dict(name="stopped-early")
    raw["train"].update(steps=10, eval_every=10)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with pytest.raises(SweepInterrupted):
            prepared = prepare(parse_spec(raw))
            run_sweep(prepared, tmp_path / "out", executor="inline", tracking_uri=uri)
    finally:
        signal.signal(signal.SIGTERM, previous)
    runs = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_experiment_by_name(raw["experiment"]).experiment_id]
    )
    assert [r.info.status for r in runs] == ["KILLED"]
    assert json.loads((tmp_path / "out" / "sweep.json").read_text())["status"] == "interrupted"


def test_an_inline_sweep_trains_while_mlflow_opens_and_logs_every_point(tmp_path, monkeypatch):
    """Inline, training does not wait for MLflow to open (seconds of imports and store set-up):
    the tracker, once open, is told every lane and point so far, and the runs hold the whole
    history."""
    import threading

    from sweeps.pipeline import prepare, run_sweep
    from sweeps.spec import parse_spec
    from sweeps.tracking.tracker import SweepTracker

    trained = threading.Event()
    opening = SweepTracker.start

    def start_after_training(self, **kwargs):  # runs in the opening thread
        assert trained.wait(60), "training waited for MLflow to open"
        opening(self, **kwargs)

    def on_progress(p):
        if p.lane_steps_done >= p.lane_steps_total > 0:  # every step trained, MLflow not open
            trained.set()

    monkeypatch.setattr(SweepTracker, "start", start_after_training)
    raw = tiny_spec_dict(name="late-tracker")
    raw["train"].update(steps=20, eval_every=5)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    prepared = prepare(parse_spec(raw))
    report = run_sweep(
        prepared, tmp_path / "out", executor="inline", tracking_uri=uri, on_progress=on_progress
    )
    assert trained.is_set()
    client = MlflowClient(uri)
    for lane in report["lanes"]:  # a diverged lane's history ends where it blew up
        history = client.get_metric_history(lane["run_id"], "val_loss")
        points = lane["history"]
        finite = [
            s for s, v in zip(points["step"], points["val_loss"], strict=True) if v is not None
        ]
        assert sorted(m.step for m in history) == finite
        assert client.get_run(lane["run_id"]).info.status == "FINISHED"
    assert any(lane["history"]["step"][-1] == 20 for lane in report["lanes"])
    state = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert state["status"] == "succeeded" and state["mlflow"]["parent_run_id"]
