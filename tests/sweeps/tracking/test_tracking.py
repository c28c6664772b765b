"""sweeps.tracking.tracker against real MLflow stores: SQLite files and a PostgreSQL-backed server."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import socket
import time
import uuid
from pathlib import Path

import mlflow.artifacts
import pytest
from conftest import tiny_spec_dict
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow_server import mlflow_server  # noqa: F401  (session fixture)

from sweeps.plan.lanes import Lane
from sweeps.plan.planner import expand_lanes
from sweeps.spec import SweepSpec, parse_spec
from sweeps.tracking.naming import TAG_ERROR, TAG_STATUS
from sweeps.tracking.stale import close_stale_runs
from sweeps.tracking.tracker import SweepTracker
from sweeps.tracking.uri import resolve_tracking_uri, ui_command
from sweeps.tracking.writer import TrackingError, chunks
from sweeps.verdict.analysis import analyze
from sweeps.verdict.report import build_report
from sweeps.verdict.results import LaneResult

STEPS = [0, 10, 20, 30, 40]
# A 1x1 PNG: the parent must carry plots as artifacts, whatever they show.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file with MLflow's schema: migrating a fresh file costs ~8 s, copying ~0."""
    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def sqlite_uri(tmp_path: Path, migrated_sqlite: Path) -> str:
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(migrated_sqlite, db)
    return f"sqlite:///{db}"


@pytest.fixture(params=["sqlite", "server"])
def tracking_uri(request: pytest.FixtureRequest) -> str:
    if request.param == "server":
        return request.getfixturevalue("mlflow_server")
    return request.getfixturevalue("sqlite_uri")


def make_spec() -> SweepSpec:
    """12 lanes; momentum searched over its beta, so two groups share "momentum.constant"."""
    search = {
        "method": "grid",
        "learning_rate": {"min": 1e-3, "max": 1.0, "num": 4, "scale": "log"},
        "optimizer": ["momentum", "adam"],
        "schedule": ["constant"],
        "optimizer_args": {"momentum": [0.9, 0.99]},
    }
    return parse_spec(tiny_spec_dict(experiment=f"tracking-{uuid.uuid4().hex[:8]}", search=search))


def fake_result(lane: Lane, steps: list[int] = STEPS, extra: bool = True) -> LaneResult:
    """A plausible history; the largest LRs diverge (inf, then NaN) at step 20."""
    diverges = lane.learning_rate >= 1.0
    r = LaneResult(lane, trial_id=f"trial-{lane.optimizer}", metric="accuracy")
    for k, step in enumerate(steps):
        loss = 2.0 / (1 + k * lane.learning_rate * 10)
        if diverges and step >= 20:
            loss = math.inf if step == 20 else math.nan
        r.step.append(step)
        r.train_loss.append(math.nan if step == 0 else loss)  # nothing trained at step 0
        r.val_loss.append(loss * 1.1)
        r.val_metric.append(1.0 - loss / 4 if math.isfinite(loss) else math.nan)
        if extra:
            r.extra_metrics.setdefault("val_f1", []).append(0.5 + k / 100)
        r.learning_rate.append(lane.learning_rate)
    r.initial_train_loss = 2.0
    r.diverged_at_step = 20 if diverges else None
    return r


def prefix(r: LaneResult, n: int) -> LaneResult:
    """The same lane with only its first n eval points (as seen mid-sweep)."""
    return dataclasses.replace(
        r,
        step=r.step[:n],
        train_loss=r.train_loss[:n],
        val_loss=r.val_loss[:n],
        val_metric=r.val_metric[:n],
        learning_rate=r.learning_rate[:n],
        extra_metrics={k: v[:n] for k, v in r.extra_metrics.items()},
    )


def make_report(spec: SweepSpec, results: list[LaneResult], tracker: SweepTracker) -> dict:
    tracker.assign_run_ids(results)
    verdicts, winner = analyze(results, loss=spec.loss)
    return build_report(
        spec=spec,
        sweep_id="sweep-1",
        executor="inline",
        results=results,
        verdicts=verdicts,
        winner=winner,
        timing={"wall_s": 1.0},
        mlflow=tracker.info,
        metric="accuracy",
    )


def plots_dir(tmp_path: Path) -> Path:
    plots = tmp_path / "out" / "plots"
    plots.mkdir(parents=True)
    (plots / "zone.png").write_bytes(PNG)
    return plots


def start(tracker: SweepTracker, spec: SweepSpec, lanes: list[Lane]) -> None:
    tracker.start(spec=spec, sweep_id="sweep-1")
    for optimizer in dict.fromkeys(lane.optimizer for lane in lanes):
        members = [lane for lane in lanes if lane.optimizer == optimizer]
        tracker.add_lanes(members, f"trial-{optimizer}")


def experiment_runs(client: MlflowClient, spec: SweepSpec) -> list:
    exp = client.get_experiment_by_name(spec.experiment)
    return client.search_runs([exp.experiment_id], max_results=1000)


def steps_of(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def finite_steps(steps: list[int], values: list[float]) -> list[int]:
    return [s for s, v in zip(steps, values, strict=True) if math.isfinite(v)]


# --------------------------------------------------------------------------- tests


def test_uri_helpers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert resolve_tracking_uri("sqlite:///rel/x.db") == f"sqlite:///{tmp_path / 'rel/x.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert resolve_tracking_uri() == "http://mlflow:5000"
    assert resolve_tracking_uri("postgresql://u@h/db") == "postgresql://u@h/db"
    assert ui_command("sqlite:////abs/mlflow.db") == (
        "mlflow ui --backend-store-uri sqlite:////abs/mlflow.db"
    )
    assert ui_command("https://mlflow.example.com") == "open https://mlflow.example.com"


def test_sweep_is_logged(tracking_uri: str, tmp_path: Path) -> None:
    """start -> progress (twice, then more points) -> finish; read everything back."""
    spec = make_spec()
    lanes = expand_lanes(spec)
    results = [fake_result(lane) for lane in lanes]
    state_path = tmp_path / "out" / "mlflow-state.json"
    tracker = SweepTracker(tracking_uri, spec.experiment, state_path)
    start(tracker, spec, lanes)
    early = [prefix(r, 3) for r in results]
    tracker.log_progress(early)
    tracker.log_progress(early)  # nothing new: nothing logged twice
    tracker.log_progress(results)
    report = make_report(spec, results, tracker)
    tracker.finish(results=results, report=report, artifacts_dir=plots_dir(tmp_path))
    tracker.close("FAILED")  # after finish: a no-op

    client = MlflowClient(tracking_uri=tracking_uri)
    runs = experiment_runs(client, spec)
    parents = [r for r in runs if r.data.tags.get("goldilocks.kind") == "sweep"]
    assert len(parents) == 1 and len(runs) == 1 + len(lanes)
    parent = parents[0]
    assert parent.info.run_id == tracker.info["parent_run_id"]
    assert parent.info.run_name == spec.name
    assert parent.data.params["search.learning_rate.min"] == "0.001"
    assert json.loads(parent.data.params["search.optimizer"]) == ["momentum", "adam"]
    assert {r.info.status for r in runs} == {"FINISHED"}

    children = {r.info.run_id: r for r in runs if r is not parent}
    for r in results:
        assert r.run_id == tracker.run_id(r.lane.index)
        child = children[r.run_id]
        tags, params, lane = child.data.tags, child.data.params, r.lane
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["goldilocks.lane"] == str(lane.index)
        assert tags["goldilocks.trial_id"] == r.trial_id
        assert tags[TAG_STATUS] == r.status
        assert float(params["learning_rate"]) == lane.learning_rate
        assert params["optimizer"] == lane.optimizer
        assert json.loads(params["model"])["name"] == "mlp"
        assert params["steps"] == "40"
        if lane.optimizer == "momentum":
            assert float(params["opt.momentum"]) == lane.optimizer_args["momentum"]
            assert child.info.run_name.startswith(f"momentum-constant-lr{lane.learning_rate:.1e}")
        else:
            assert {"opt.b1", "opt.b2", "opt.eps"} <= set(params)
        # full histories, right steps, each point once, NaN/inf skipped
        assert steps_of(client, r.run_id, "val_loss") == finite_steps(r.step, r.val_loss)
        assert steps_of(client, r.run_id, "train_loss") == finite_steps(r.step, r.train_loss)
        assert steps_of(client, r.run_id, "val_accuracy") == finite_steps(r.step, r.val_metric)
        assert steps_of(client, r.run_id, "val_f1") == STEPS
        assert steps_of(client, r.run_id, "lr") == STEPS
        metrics = child.data.metrics
        assert metrics["best_val_loss"] == pytest.approx(r.best_val_loss)
        if r.diverged_at_step is not None:
            assert r.status == "diverged" and metrics["diverged_at_step"] == 20
        else:
            assert "diverged_at_step" not in metrics
            assert metrics["final_train_loss"] == pytest.approx(r.final_train_loss)

    # the verdict on the parent: per-group metrics, winner tags, report and plots
    pm = parent.data.metrics
    adam = next(g for g in report["groups"] if g["optimizer"] == "adam")
    assert pm["adam.constant.best_lr"] == pytest.approx(adam["best_lr"])
    assert pm["adam.constant.max_stable_lr"] == pytest.approx(adam["max_stable_lr"])
    assert pm["adam.constant.min_diverged_lr"] == pytest.approx(1.0)
    assert {
        "momentum.constant.momentum_0.9.best_lr",
        "momentum.constant.momentum_0.99.best_lr",
    } <= set(pm)
    assert parent.data.tags["winner.run_id"] == report["winner"]["run_id"]
    files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"report.json", "spec.json", "verdict.md", "plots"} <= files
    verdict = mlflow.artifacts.download_artifacts(
        run_id=parent.info.run_id,
        artifact_path="verdict.md",
        dst_path=str(tmp_path / "dl-verdict"),
        tracking_uri=tracking_uri,
    )
    table = Path(verdict).read_text()
    assert table.startswith(f"# Goldilocks verdict — {spec.name}")
    for g in report["groups"]:  # one row per group, in rank order
        assert f"| {g['rank']} | {g['optimizer']} | {g['schedule']} |" in table
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "plots")] == [
        "plots/zone.png"
    ]
    local = mlflow.artifacts.download_artifacts(
        run_id=parent.info.run_id,
        artifact_path="report.json",
        dst_path=str(tmp_path / "dl"),
        tracking_uri=tracking_uri,
    )
    assert json.loads(Path(local).read_text())["name"] == spec.name
    png = mlflow.artifacts.download_artifacts(
        run_id=parent.info.run_id,
        artifact_path="plots/zone.png",
        dst_path=str(tmp_path / "dl"),
        tracking_uri=tracking_uri,
    )
    assert Path(png).read_bytes() == PNG

    state = json.loads(state_path.read_text())
    assert state["parent_run_id"] == parent.info.run_id
    assert state["runs"] == {str(r.lane.index): r.run_id for r in results}
    assert set(state["logged"].values()) == {40}


def test_restart_reuses_runs(sqlite_uri: str, tmp_path: Path) -> None:
    spec = make_spec()
    lanes = expand_lanes(spec)
    results = [fake_result(lane) for lane in lanes]
    state_path = tmp_path / "mlflow-state.json"
    first = SweepTracker(sqlite_uri, spec.experiment, state_path)
    start(first, spec, lanes)
    first.log_progress([prefix(r, 3) for r in results])
    first.flush()
    run_ids = {lane.index: first.run_id(lane.index) for lane in lanes}
    # the process "dies" here: no finish, no close

    second = SweepTracker(sqlite_uri, spec.experiment, state_path)
    start(second, spec, lanes)
    assert second.info["parent_run_id"] == first.info["parent_run_id"]
    assert {lane.index: second.run_id(lane.index) for lane in lanes} == run_ids
    client = MlflowClient(tracking_uri=sqlite_uri)
    assert len(experiment_runs(client, spec)) == 1 + len(lanes)
    assert client.get_run(run_ids[0]).info.status == "RUNNING"
    second.log_progress(results)  # replays the first 3 points: only the last 2 are new
    *done, lost = results  # the last lane's trial never came back
    second.finish(results=done, report=make_report(spec, done, second), artifacts_dir=None)
    runs = experiment_runs(client, spec)
    assert len(runs) == 1 + len(lanes)
    status = {r.info.run_id: r.info.status for r in runs}
    assert status.pop(run_ids[lost.lane.index]) == "FAILED"
    assert set(status.values()) == {"FINISHED"}
    for r in results:
        assert steps_of(client, run_ids[r.lane.index], "lr") == STEPS
    state = json.loads(state_path.read_text())
    assert set(state["logged"].values()) == {40}


def test_close_kills_runs(sqlite_uri: str, tmp_path: Path) -> None:
    spec = make_spec()
    lanes = expand_lanes(spec)
    tracker = SweepTracker(sqlite_uri, spec.experiment, tmp_path / "state.json")
    start(tracker, spec, lanes)
    tracker.log_progress([prefix(fake_result(lane), 2) for lane in lanes])
    tracker.close("KILLED", reason="cancelled by the user")
    tracker.close("KILLED")  # idempotent
    client = MlflowClient(tracking_uri=sqlite_uri)
    runs = experiment_runs(client, spec)
    assert len(runs) == 1 + len(lanes)
    assert {r.info.status for r in runs} == {"KILLED"}
    parent = client.get_run(tracker.info["parent_run_id"])
    assert parent.data.tags[TAG_ERROR] == "cancelled by the user"


def test_close_stale_runs_after_crash(sqlite_uri: str, tmp_path: Path) -> None:
    spec = make_spec()
    lanes = expand_lanes(spec)
    state_path = tmp_path / "state.json"
    tracker = SweepTracker(sqlite_uri, spec.experiment, state_path)
    start(tracker, spec, lanes)
    tracker.log_progress([prefix(fake_result(lane), 2) for lane in lanes])
    tracker.flush()  # then the process dies: every run stays RUNNING
    client = MlflowClient(tracking_uri=sqlite_uri)
    assert {r.info.status for r in experiment_runs(client, spec)} == {"RUNNING"}

    assert close_stale_runs(sqlite_uri, state_path, reason="worker lost") == 1 + len(lanes)
    runs = experiment_runs(client, spec)
    assert {r.info.status for r in runs} == {"FAILED"}
    assert client.get_run(tracker.info["parent_run_id"]).data.tags[TAG_ERROR] == "worker lost"
    assert close_stale_runs(sqlite_uri, state_path) == 0
    assert close_stale_runs(sqlite_uri, tmp_path / "missing.json") == 0


def test_logging_throughput(sqlite_uri: str, tmp_path: Path) -> None:
    """256 lanes x 20 eval points, reported point by point as a population would.

    What must be fast is the caller's side (start and log_progress never wait on the store).
    The store's own time is dominated by MLflow's SQLAlchemy store (~20-45 ms per create_run or
    log_batch on a shared 2-core box): the guards catch pathologies (one call per value or per
    point), not machine load.
    """
    spec = make_spec()
    lanes = [Lane(i, "adam", "constant", 10 ** (-4 + i / 64), 0, {}, {}) for i in range(256)]
    steps = list(range(0, 200, 10))
    full = [fake_result(lane, steps, extra=False) for lane in lanes]
    tracker = SweepTracker(sqlite_uri, spec.experiment, tmp_path / "state.json")
    t0 = time.perf_counter()
    start(tracker, spec, lanes)
    start_s = time.perf_counter() - t0
    enqueue_s = 0.0
    for n in range(1, len(steps) + 1):
        t1 = time.perf_counter()
        tracker.log_progress([prefix(r, n) for r in full])
        enqueue_s += time.perf_counter() - t1
    tracker.finish(results=full, report=make_report(spec, full, tracker), artifacts_dir=None)
    wall = time.perf_counter() - t0
    values = sum(len(r.step) * 4 for r in full) - len(full)  # train_loss is NaN at step 0
    calls = tracker._writer.calls
    print(
        f"\n256 lanes x 20 points ({values} metric values): start {start_s:.2f} s, "
        f"log_progress x20 {enqueue_s:.2f} s; MLflow {tracker.log_seconds:.2f} s in {calls} "
        f"calls (256 create_run + 256 set_terminated + log_batch); wall {wall:.2f} s"
    )
    # Guards against pathologies (a store call per lane or per value would take minutes), not
    # a stopwatch: a loaded 2-core CI box measured 2.04 s here where a quiet one takes ~0.3 s.
    assert start_s < 5.0  # children are created by the writer, not by start()
    assert enqueue_s < 5.0
    assert calls < 5 * len(lanes)  # merged: not one log_batch per lane per eval point (5120)
    assert tracker.log_seconds < 90  # ~15 s idle-ish, ~40 s at load average 7 on 2 cores
    client = MlflowClient(tracking_uri=sqlite_uri)
    assert steps_of(client, tracker.run_id(255), "lr") == steps


def test_write_errors_surface_from_flush(sqlite_uri: str, tmp_path: Path) -> None:
    """A store error is re-raised by flush; the writer keeps going for the other runs."""
    spec = make_spec()
    lanes = expand_lanes(spec)
    tracker = SweepTracker(sqlite_uri, spec.experiment, tmp_path / "state.json")
    start(tracker, spec, lanes)
    tracker.flush()
    client = MlflowClient(tracking_uri=sqlite_uri)
    client.delete_run(tracker.run_id(0))  # MLflow refuses writes to a deleted run
    tracker.log_progress([fake_result(lane) for lane in lanes])
    with pytest.raises(TrackingError, match="log_batch"):
        tracker.flush()
    assert steps_of(client, tracker.run_id(1), "lr") == STEPS
    tracker.close("FAILED", reason="tracking failed")  # logs, never raises
    assert client.get_run(tracker.run_id(1)).info.status == "FAILED"
    state = json.loads((tmp_path / "state.json").read_text())
    assert "0" not in state["logged"] and state["logged"]["1"] == 40


def test_unreachable_server_fails_at_start_within_seconds(tmp_path: Path) -> None:
    """MLflow's own client retries a refused connection for minutes; the tracker checks the
    server first and fails at once, naming the URI (nothing created, nothing to end)."""
    spec = make_spec()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    tracker = SweepTracker(uri, spec.experiment, tmp_path / "s.json")
    t0 = time.monotonic()
    with pytest.raises(TrackingError, match=f"MLflow tracking server {uri} is unreachable"):
        start(tracker, spec, expand_lanes(spec))
    assert time.monotonic() - t0 < 30  # a hang guard: it answers in well under a second
    tracker.close("FAILED")
    assert not (tmp_path / "s.json").exists()


def test_chunks_respect_mlflow_limits() -> None:
    metrics = [Metric("m", 1.0, 0, i) for i in range(2500)]
    params = [Param(f"p{i}", "v") for i in range(250)]
    tags = [RunTag(f"t{i}", "v") for i in range(150)]
    calls = list(chunks(metrics, params, tags))
    for ms, ps, ts in calls:
        assert len(ms) <= 1000 and len(ps) <= 100 and len(ts) <= 100
        assert len(ms) + len(ps) + len(ts) <= 1000
    assert sum(len(c[0]) for c in calls) == 2500
    assert sum(len(c[1]) for c in calls) == 250
    assert sum(len(c[2]) for c in calls) == 150
    assert list(chunks([], [], [])) == []


def test_long_histories_and_values(sqlite_uri: str, tmp_path: Path) -> None:
    """A lane with 300 eval points (1,500 values: several log_batch calls); long params cut."""
    spec = parse_spec(
        tiny_spec_dict(
            experiment=f"tracking-{uuid.uuid4().hex[:8]}",
            model={"name": "mlp", "hidden": [8] * 200},  # its JSON is > 500 characters
            search={"learning_rate": {"min": 0.01, "max": 0.01, "num": 1}, "optimizer": ["adam"]},
        )
    )
    lanes = expand_lanes(spec)
    steps = list(range(0, 3000, 10))
    results = [fake_result(lane, steps) for lane in lanes]
    tracker = SweepTracker(sqlite_uri, spec.experiment, tmp_path / "state.json")
    start(tracker, spec, lanes)
    tracker.log_progress(results)
    tracker.finish(results=results, report=make_report(spec, results, tracker), artifacts_dir=None)
    client = MlflowClient(tracking_uri=sqlite_uri)
    assert steps_of(client, results[0].run_id, "val_f1") == steps
    parent = client.get_run(tracker.info["parent_run_id"])
    hidden = parent.data.params["model.hidden"]
    assert len(hidden) == 500 and hidden.endswith("…")
    child = client.get_run(results[0].run_id)
    assert json.loads(child.data.params["model"])["hidden"] == [8] * 200  # < 6,000: kept whole


def test_a_tracker_made_after_the_environment_was_replaced_has_the_retry_defaults(tmp_path):
    """The service's standby driver imports the tracker, then takes the service's environment
    (service/standby.py): MLflow's client must still give up on a dead server in ~30 s, not
    MLflow's 4 minutes (its defaults: 7 retries, backoff 2, 120 s timeout)."""
    import os
    import subprocess
    import sys

    script = f"""
import os
import sweeps.tracking.tracker as t
env = {{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}}
os.environ.clear()
os.environ.update(env)  # as the standby does when it is handed its sweep
tracker = t.SweepTracker("sqlite:///{tmp_path}/m.db", "x", __import__("pathlib").Path("{tmp_path}/s.json"))
from mlflow.environment_variables import (
    MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR, MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT)
print(MLFLOW_HTTP_REQUEST_MAX_RETRIES.get(), MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get(),
      MLFLOW_HTTP_REQUEST_TIMEOUT.get())
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["5", "1", "30"]
