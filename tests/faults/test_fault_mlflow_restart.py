"""Fault: the MLflow tracking server (a real `mlflow server` on PostgreSQL, its own process
group, on loopback) is killed with SIGKILL while a sweep logs to it over HTTP.

The sweep is `goldilocks run --executor inline` in a process of its own, each eval point held
back a little (tests/faults/slow_cli.py) so that it is still training when the server dies.

- Killed and started again at once, on the same port and store: the sweep rides it out
  (MLflow's client retries each call, sweeps/tracking/tracker.py) and succeeds, every lane's
  history complete in MLflow, no point lost or logged twice. A restart of `mlflow server`
  takes 20-45 s on this 2-core machine (two Python start-ups, the CLI and its uvicorn child),
  longer than the default ~30 s a call is retried: with the default the sweep fails (the case
  below). So this case gives the sweep MLFLOW_HTTP_REQUEST_MAX_RETRIES=7 (~2 minutes), the
  documented knob for a server that takes longer to come back.
- Killed and not started again: the sweep ends `failed` within the documented bound (each
  call retried for about 30 s, then the sweep fails), exit 1, its folder kept; once the server
  is back, `goldilocks resume` finishes it on the same runs with nothing lost or doubled.

Figures (pytest -s): when the kill landed, how long the restart took, the kill to the final
state, points per lane.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faultlib import fault_spec, keep_figures, mlflow_runs, repeated_steps
from faultservers import MlflowServer
from testlib import postgres_database

REPO = Path(__file__).resolve().parents[2]
SLOW_CLI = [sys.executable, str(Path(__file__).with_name("slow_cli.py"))]
STEPS, EVAL_EVERY = 600, 5  # 120 eval points a lane
POINT_DELAY_S = 0.2  # about 24 s of training after the compile
EXPECTED = list(range(EVAL_EVERY, STEPS + 1, EVAL_EVERY))
# logged at every eval point of every lane (the validation loss at step 0 too)
HISTORIES = {"train_loss": EXPECTED, "val_loss": [0, *EXPECTED]}
# MLflow's client (set by sweeps/tracking/tracker.py): 5 retries, backoff 1 s doubling (0, 2,
# 4, 8, 16 s) plus up to 1 s of jitter each, so a call gives up ~30-35 s after it first failed.
RETRY_WINDOW_S = 35
# 7 retries: 0 + 2 + 4 + 8 + 16 + 32 + 64 s, about 2 minutes for the server to come back
LONG_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "7"}


def slow_spec(name: str) -> dict:
    raw = fault_spec(name)
    raw["train"].update(steps=STEPS, eval_every=EVAL_EVERY)
    # no lane diverges: every lane logs every eval point, so a complete history is known
    raw["search"]["learning_rate"].update(min=1e-3, max=0.1)
    return raw


def start_sweep(tmp: Path, raw: dict, out: Path, uri: str, **env: str) -> subprocess.Popen:
    spec = tmp / f"{raw['name']}.json"
    spec.write_text(json.dumps(raw))
    log = (tmp / "driver.log").open("ab")
    return subprocess.Popen(
        [*SLOW_CLI, "run", str(spec), "--out", str(out), "--executor", "inline",
         "--tracking-uri", uri],
        env={**os.environ, "PYTHONPATH": str(REPO), "FAULT_POINT_DELAY_S": str(POINT_DELAY_S),
             **env},
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp,
    )  # fmt: skip


def lane_points(runs: dict) -> dict[str, int]:
    return {
        k: len(r["steps"].get("train_loss", [])) for k, r in runs.items() if r["kind"] == "lane"
    }


def wait_logged(proc: subprocess.Popen, uri: str, experiment: str, log: Path, timeout=240):
    """Until every lane has a few points in MLflow, mid-training; the runs then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            runs = mlflow_runs(uri, experiment)
        except AssertionError:  # no experiment yet
            runs = {}
        points = lane_points(runs)
        if len(points) == 3 and min(points.values()) >= 5:
            assert max(points.values()) < len(EXPECTED) // 2, points  # mid-training, not after
            return runs
        time.sleep(0.5)
    raise AssertionError(f"no points in MLflow after {timeout} s:\n{log.read_text()[-3000:]}")


def assert_complete(before: dict, after: dict) -> None:
    """Every run FINISHED, every lane's history complete, none doubled, none lost."""
    assert set(before) <= set(after), "a run logged before the fault is gone"
    assert len(after) == 4, after  # parent + 3 lanes: no second set of runs
    assert {r["status"] for r in after.values()} == {"FINISHED"}, after
    assert not repeated_steps(after), repeated_steps(after)
    for run_id, run in after.items():
        if run["kind"] == "lane":
            for key, steps in HISTORIES.items():
                assert run["steps"][key] == steps, (run_id, key, run["steps"][key])
    for run_id, run in before.items():
        for key, steps in run["steps"].items():
            assert set(steps) <= set(after[run_id]["steps"][key]), (run_id, key)


@pytest.fixture
def server(tmp_path):
    with postgres_database() as backend:
        srv = MlflowServer(backend, tmp_path / "mlflow")
        srv.start()
        try:
            yield srv
        finally:
            srv.stop()


@pytest.mark.manual
def test_mlflow_server_killed_and_restarted_mid_sweep_loses_nothing(server, tmp_path):
    raw = slow_spec("mlflow-restart")
    out = tmp_path / "sweep"
    log = tmp_path / "driver.log"
    t0 = time.monotonic()
    proc = start_sweep(tmp_path, raw, out, server.url, **LONG_RETRIES)
    try:
        before = wait_logged(proc, server.url, raw["experiment"], log)
        fraction = json.loads((out / "progress.json").read_text())["fraction"]
        t_kill = time.monotonic()
        server.kill9()
        restart_s = server.start()
        rc = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = time.monotonic()
    said = log.read_text()
    state = json.loads((out / "sweep.json").read_text())
    after = mlflow_runs(server.url, raw["experiment"])
    keep_figures(
        tmp_path / "mlflow_restart_figures.json",
        "MLflow server killed and restarted mid-sweep",
        {
            "killed_at_fraction": fraction,
            "points_per_lane_before_kill": sorted(lane_points(before).values()),
            "restart_s": round(restart_s, 1),
            "kill_to_exit_s": round(done - t_kill, 1),
            "sweep_wall_s": round(done - t0, 1),
            "exit_code": rc,
            "status": state["status"],
            "points_per_lane_after": sorted(lane_points(after).values()),
            "client_retries": LONG_RETRIES["MLFLOW_HTTP_REQUEST_MAX_RETRIES"],
        },
    )
    assert rc == 0, said[-3000:]
    assert state["status"] == "succeeded", state
    assert_complete(before, after)


@pytest.mark.manual
def test_mlflow_server_killed_for_good_fails_the_sweep_in_bounds_and_resume_finishes_it(
    server, tmp_path
):
    raw = slow_spec("mlflow-gone")
    out = tmp_path / "sweep"
    log = tmp_path / "driver.log"
    proc = start_sweep(tmp_path, raw, out, server.url)
    try:
        before = wait_logged(proc, server.url, raw["experiment"], log)
        fraction = json.loads((out / "progress.json").read_text())["fraction"]
        t_kill = time.monotonic()
        server.kill9()
        rc = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    failed_after = time.monotonic() - t_kill
    said = log.read_text()
    state = json.loads((out / "sweep.json").read_text())
    train_left_s = (1 - fraction) * len(EXPECTED) * POINT_DELAY_S
    kept = sorted(p.name for p in out.iterdir())  # the folder as the failed sweep left it

    restart_s = server.start()  # back, for the resume
    stranded = mlflow_runs(server.url, raw["experiment"])
    t1 = time.monotonic()
    resumed = subprocess.run(
        [*SLOW_CLI, "resume", str(out)],
        env={**os.environ, "PYTHONPATH": str(REPO), "FAULT_POINT_DELAY_S": "0"},
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    resume_s = time.monotonic() - t1
    after = mlflow_runs(server.url, raw["experiment"])
    keep_figures(
        tmp_path / "mlflow_gone_figures.json",
        "MLflow server killed mid-sweep, not restarted",
        {
            "killed_at_fraction": fraction,
            "points_per_lane_before_kill": sorted(lane_points(before).values()),
            "kill_to_failed_s": round(failed_after, 1),
            "training_left_at_kill_s": round(train_left_s, 1),
            "exit_code": rc,
            "status": state["status"],
            "error": state.get("error"),
            "run_statuses_while_down": sorted(r["status"] for r in stranded.values()),
            "restart_s": round(restart_s, 1),
            "resume_exit_code": resumed.returncode,
            "resume_s": round(resume_s, 1),
            "points_per_lane_after_resume": sorted(lane_points(after).values()),
        },
    )
    assert rc == 1, said[-3000:]
    assert state["status"] == "failed" and "MLflow" in state["error"], state
    # the documented bound: one call's retries (~30 s) after the first failing write, or the
    # end of training if that comes later, plus the finish (slack for this 2-core machine)
    assert failed_after < max(RETRY_WINDOW_S, train_left_s) + 45, failed_after
    for name in ("sweep.json", "spec.json", "mlflow_state.json"):
        assert name in kept, kept  # the folder is kept for resume
    assert "report.json" not in kept, kept  # no report of a sweep that failed
    assert set(before) <= set(stranded)  # nothing logged before the kill is lost
    for run_id, run in before.items():
        for key, steps in run["steps"].items():
            assert set(steps) <= set(stranded[run_id]["steps"][key]), (run_id, key)

    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    assert json.loads((out / "sweep.json").read_text())["status"] == "succeeded"
    assert_complete(before, after)
