"""Sweeps that really run (inline executor, each driver its own process, real MLflow store):
the happy path over HTTP and from the CLI, cancel, and a sweep that fails."""

from __future__ import annotations

import concurrent.futures
import json
import os
import threading
import time

import pytest
import yaml
from svc_testlib import (
    live_server,
    make_settings,
    service_spec,
    sweep_runs,
    tracking_client,
    wait_for,
)
from typer.testing import CliRunner

from service.cli import app as cli_app

PNG = b"\x89PNG\r\n\x1a\n"


def newest(api, name: str) -> dict | None:
    """The newest sweep, if it is called `name`."""
    items = api.get("/sweeps", params={"limit": 1}).json()["items"]
    return items[0] if items and items[0]["name"] == name else None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with live_server(make_settings(tmp_path_factory.mktemp("inline"))) as s:
        yield s


@pytest.fixture(scope="module")
def mlflow_client():
    return tracking_client()


@pytest.fixture(scope="module")
def happy(server, tmp_path_factory):
    """`goldilocks submit --wait` of a tiny sweep: the end-to-end happy path."""
    spec = tmp_path_factory.mktemp("happy") / "happy.yaml"
    spec.write_text(yaml.safe_dump(service_spec("happy")))
    result = CliRunner(env={"GOLDILOCKS_SERVER": server.url}).invoke(
        cli_app, ["submit", str(spec), "--wait", "--poll", "0.5"]
    )
    sweep_id = result.stdout.split()[1] if result.stdout.startswith("submitted") else None
    return result, sweep_id


def test_submit_wait_shows_progress_and_the_verdict(happy):
    result, sweep_id = happy
    assert result.exit_code == 0, (result.output, result.exception)
    out = result.stdout
    assert out.startswith(f"submitted {sweep_id} (happy): queued")
    assert "100%" in out  # the progress bar reached the end
    assert "Goldilocks verdict — happy" in out
    assert sum(line.startswith("winner: adam · constant at LR") for line in out.splitlines()) == 1
    assert "MLflow: experiment" in out and "#/experiments/" in out
    # the store, and the links open the runs view (not the GenAI one)
    assert f"tracking URI: {os.environ['MLFLOW_TRACKING_URI']}" in out
    assert "/runs?workflowType=machine_learning" in out


def test_status_of_a_succeeded_sweep_exits_0(server, happy):
    _, sweep_id = happy
    result = CliRunner(env={"GOLDILOCKS_SERVER": server.url}).invoke(cli_app, ["status", sweep_id])
    assert result.exit_code == 0 and "succeeded" in result.stdout, result.output


def test_happy_path_over_http(server, happy):
    _, sweep_id = happy
    api = server.client()
    sweep = api.get(f"/sweeps/{sweep_id}").json()
    assert sweep["status"] == "succeeded" and sweep["error"] is None and sweep["attempts"] == 1
    assert sweep["created_at"] <= sweep["started_at"] <= sweep["finished_at"]
    p = sweep["progress"]
    assert (p["lanes_total"], p["lane_steps_done"], p["lane_steps_total"]) == (3, 60, 60)
    assert (p["trials_done"], p["trials_total"], p["trials_running"]) == (1, 1, 0)
    assert p["fraction"] == 1.0 and p["eta_s"] == 0.0
    m = sweep["mlflow"]
    assert m["experiment_id"] and m["parent_run_id"]
    assert m["parent_run_url"] == (
        f"http://127.0.0.1:5000/#/experiments/{m['experiment_id']}/runs/{m['parent_run_id']}"
        "?workflowType=machine_learning"
    )
    assert m["tracking_uri"] == os.environ["MLFLOW_TRACKING_URI"]

    report = api.get(sweep["report_url"])
    assert report.status_code == 200 and report.headers["content-type"] == "application/json"
    report = report.json()
    assert report["sweep_id"] == sweep_id and report["executor"] == "inline"
    assert report["mlflow"]["parent_run_id"] == m["parent_run_id"]
    assert len(report["lanes"]) == 3 and report["winner"]["optimizer"] == "adam"

    assert set(sweep["plot_urls"]) == {"goldilocks", "training_curves", "metric_vs_lr"}
    for url in sweep["plot_urls"].values():
        png = api.get(url)
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert png.content.startswith(PNG)
    assert api.get(f"/sweeps/{sweep_id}/plots/goldilocks").content.startswith(PNG)
    assert api.get(f"/sweeps/{sweep_id}/plots/nope.png").status_code == 404

    listed = api.get("/sweeps", params={"status": "succeeded"}).json()["items"]
    assert sweep_id in [s["id"] for s in listed]
    assert api.post(f"/sweeps/{sweep_id}/cancel").status_code == 409


def test_report_lists_the_plots_and_the_mlflow_links(server, happy):
    _, sweep_id = happy
    result = CliRunner(env={"GOLDILOCKS_SERVER": server.url}).invoke(cli_app, ["report", sweep_id])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for name in ("goldilocks", "training_curves", "metric_vs_lr"):
        assert f"{name}: {server.url}/sweeps/{sweep_id}/plots/{name}.png" in out
    assert "Goldilocks verdict — happy" in out
    assert "tracking URI:" in out and "/runs?workflowType=machine_learning" in out


def test_happy_path_logs_one_mlflow_run_per_lane(server, happy, mlflow_client):
    sweep = server.sweep(happy[1])
    lanes = sweep_runs(mlflow_client, sweep)
    assert len(lanes) == 3
    assert {r.info.status for r in lanes} == {"FINISHED"}
    assert {r.data.tags["mlflow.parentRunId"] for r in lanes} == {sweep["mlflow"]["parent_run_id"]}
    parents = sweep_runs(mlflow_client, sweep, kind="sweep")
    assert [r.info.run_id for r in parents] == [sweep["mlflow"]["parent_run_id"]]
    assert parents[0].info.status == "FINISHED"


def test_cancel_running_sweep_ends_its_runs_killed_within_seconds(server, mlflow_client):
    api = server.client()
    # long enough to be mid-training when cancelled (about a second per eval point)
    raw = service_spec("cancel-running", steps=2_000_000, eval_every=20_000)
    sweep_id = api.post("/sweeps", json=raw).json()["id"]
    wait_for(
        lambda: (
            (s := server.sweep(sweep_id))["mlflow"]
            and (s["progress"] or {}).get("lane_steps_done", 0) > 0
        ),
        240,
        "the sweep to be training and logging to MLflow",
    )
    t0 = time.monotonic()
    r = api.post(f"/sweeps/{sweep_id}/cancel")
    elapsed = time.monotonic() - t0
    assert r.status_code == 200, r.text
    sweep = r.json()
    assert sweep["status"] == "cancelled" and sweep["error"] == "cancelled by request"
    assert elapsed < 15, f"cancel took {elapsed:.1f} s"
    assert 0 < sweep["progress"]["fraction"] < 1
    runs = sweep_runs(mlflow_client, sweep) + sweep_runs(mlflow_client, sweep, kind="sweep")
    assert len(runs) == 4 and {r.info.status for r in runs} == {"KILLED"}
    assert api.post(f"/sweeps/{sweep_id}/cancel").status_code == 409
    assert api.get(f"/sweeps/{sweep_id}/report").status_code == 404


def test_cli_cancel_returns_once_recorded_and_wait_blocks_until_the_end(server):
    api = server.client()
    raw = service_spec("cli-cancel", steps=2_000_000, eval_every=20_000)
    sweep_id = api.post("/sweeps", json=raw).json()["id"]
    server.wait_status(sweep_id, ("running",), timeout=60)
    runner = CliRunner(env={"GOLDILOCKS_SERVER": server.url})

    t0 = time.monotonic()
    result = runner.invoke(cli_app, ["cancel", sweep_id])
    elapsed = time.monotonic() - t0
    assert result.exit_code == 0, result.output
    # Answered before the driver stopped (the server would wait up to its cancel_wait_s).
    assert f"cancelling {sweep_id}" in result.stdout and elapsed < 5, (elapsed, result.output)
    assert server.sweep(sweep_id)["cancel_requested"] is True

    result = runner.invoke(cli_app, ["cancel", sweep_id, "--wait", "--poll", "0.2"])
    assert result.exit_code == 0, result.output
    assert f"cancelled {sweep_id}" in result.stdout
    assert server.sweep(sweep_id)["status"] == "cancelled"  # ended when --wait returned
    result = runner.invoke(cli_app, ["status", sweep_id])
    assert result.exit_code == 3 and "cancelled" in result.stdout, result.output


def test_cancel_without_wait_answers_202_at_once(server):
    api = server.client()
    raw = service_spec("api-cancel", steps=2_000_000, eval_every=20_000)
    sweep_id = api.post("/sweeps", json=raw).json()["id"]
    server.wait_status(sweep_id, ("running",), timeout=60)
    t0 = time.monotonic()
    r = api.post(f"/sweeps/{sweep_id}/cancel", params={"wait": "false"})
    assert r.status_code == 202 and time.monotonic() - t0 < 5, r.text
    assert r.json()["status"] == "running" and r.json()["cancel_requested"] is True
    assert server.wait_status(sweep_id, timeout=60)["status"] == "cancelled"


def test_submit_wait_exits_3_when_the_sweep_is_cancelled(server, tmp_path):
    spec = tmp_path / "doomed.yaml"
    spec.write_text(yaml.safe_dump(service_spec("doomed", steps=2_000_000, eval_every=20_000)))
    outcome = {}

    def follow():
        runner = CliRunner(env={"GOLDILOCKS_SERVER": server.url})
        outcome["result"] = runner.invoke(cli_app, ["submit", str(spec), "--wait", "--poll", "0.2"])

    thread = threading.Thread(target=follow)
    thread.start()
    api = server.client()
    doomed = wait_for(lambda: newest(api, "doomed"), 60, "the CLI's sweep to be submitted")
    cancel = api.post(f"/sweeps/{doomed['id']}/cancel")
    assert cancel.status_code in (200, 202), cancel.text
    thread.join(120)
    result = outcome["result"]
    assert result.exit_code == 3, result.output
    assert f"cancelled: sweep {doomed['id']}" in " ".join(result.stderr.split())
    assert server.sweep(doomed["id"])["status"] == "cancelled"


def test_failing_sweep_ends_failed_with_the_reason_and_service_lives_on(server, tmp_path):
    """Valid at submit, but its data file is gone when the driver starts: the driver fails
    (exit 2) and the sweep ends failed with the driver's own message.

    A long sweep holds the runner's one driver slot while the file goes, so the failing sweep
    is still queued then (a standby driver would start it, and read the file, at once)."""
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    csv = server.settings.datasets_path / "vanishing.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    csv.write_text(
        "a,b,c,d,y\n" + "".join(f"{','.join(map(str, r))},{t}\n" for r, t in zip(x, y, strict=True))
    )
    raw = service_spec(
        "fails", data={"path": "vanishing.csv", "target": "y", "task": "classification"}
    )
    spec = tmp_path / "fails.json"
    spec.write_text(json.dumps(raw))
    api = server.client()
    assert server.settings.max_running == 1
    blocker = api.post("/sweeps", json=service_spec("blocker", steps=2_000_000)).json()["id"]
    server.wait_status(blocker, ("running",), 120)

    def follow():
        runner = CliRunner(env={"GOLDILOCKS_SERVER": server.url})
        return runner.invoke(cli_app, ["submit", str(spec), "--wait", "--poll", "0.2"])

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(follow)
        queued = wait_for(lambda: newest(api, "fails"), 60, "the CLI's sweep to be submitted")
        assert queued["status"] == "queued"  # behind the blocker
        csv.unlink()
        # 202 where the blocker takes longer than cancel_wait_s to stop (a loaded machine)
        assert api.post(f"/sweeps/{blocker}/cancel").status_code in (200, 202)
        result = future.result(timeout=240)
    assert result.exit_code == 1, result.output
    text = " ".join(result.stderr.split())
    assert "sweep failed:" in text and "data.path: file not found:" in text
    assert "vanishing.csv" in text
    sweep = api.get("/sweeps", params={"limit": 1}).json()["items"][0]
    assert sweep["status"] == "failed" and "data.path: file not found" in sweep["error"]
    assert "--- attempt" not in sweep["error"]
    status = CliRunner(env={"GOLDILOCKS_SERVER": server.url}).invoke(
        cli_app, ["status", sweep["id"]]
    )
    assert status.exit_code == 1 and "failed" in status.stdout, status.output
    assert api.get("/healthz").json()["ready"] is True


def test_a_sweep_over_the_wall_time_cap_ends_failed_with_the_reason(tmp_path, mlflow_client):
    with live_server(make_settings(tmp_path, max_sweep_s=8.0, cancel_grace_s=10.0)) as server:
        api = server.client()
        raw = service_spec("overtime", steps=2_000_000, eval_every=20_000)  # hours of work
        sweep_id = api.post("/sweeps", json=raw).json()["id"]
        sweep = wait_for(
            lambda: (s := server.sweep(sweep_id))["status"] in ("succeeded", "failed") and s,
            120,
            "the runaway sweep to be stopped",
        )
    assert sweep["status"] == "failed", sweep
    assert "GOLDILOCKS_MAX_SWEEP_S" in sweep["error"] and "over 8 s" in sweep["error"]
    assert sweep["attempts"] == 1  # stopped, not resumed: the cap is the reason
    if sweep["mlflow"]:  # what it logged before the stop is closed, none left RUNNING
        runs = sweep_runs(mlflow_client, sweep) + sweep_runs(mlflow_client, sweep, kind="sweep")
        assert runs and "RUNNING" not in {r.info.status for r in runs}
