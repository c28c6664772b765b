"""What `goldilocks status/submit` show a user, against a paused service (no drivers): the
stage before training instead of 0/0 counts, the MLflow store and the runs-view links, and a
spec checked before any data is uploaded."""

from __future__ import annotations

import pytest
import yaml
from sqlalchemy import update
from svc_testlib import TOKEN, live_server, paused_settings, service_spec
from typer.testing import CliRunner

from service import store
from service.cli import app as cli_app
from sweeps.folder import SweepFolder
from sweeps.stream import Progress

ML = "workflowType=machine_learning"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with live_server(paused_settings(tmp_path_factory.mktemp("views"))) as s:
        yield s


@pytest.fixture
def cli(server):
    return CliRunner(env={"GOLDILOCKS_API_TOKEN": TOKEN, "GOLDILOCKS_SERVER": server.url})


def _queued(server) -> str:
    with server.client() as api:
        r = api.post("/sweeps", json=service_spec("views"))
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _progress(server, sweep_id: str, p: Progress) -> None:
    SweepFolder(server.settings.sweeps_dir / sweep_id).write_progress(p.as_dict())


def test_status_while_measuring_shows_the_stage_not_zero_counts(server, cli):
    sid = _queued(server)
    measuring = "measuring the lane width for adam-constant on this CPU"
    _progress(server, sid, Progress(phase=measuring, stage="measuring"))
    out = " ".join(cli.invoke(cli_app, ["status", sid]).stdout.split())
    assert measuring in out and "measuring: measuring" not in out
    assert "0/0" not in out and "0%" not in out and "ETA once training has begun" in out


def test_status_while_training_shows_the_pace_and_its_eta(server, cli):
    sid = _queued(server)
    p = Progress(lane_steps_done=300, lane_steps_total=1200, lanes_total=3, trials_total=1)
    p.stage, p.lane_steps_per_s, p.eta_s, p.trials_running = "training", 100.0, 9.0, 1
    _progress(server, sid, p)
    with server.app.state.sessions() as session:  # as the runner marks it (no driver here)
        session.execute(
            update(store.Sweep)
            .where(store.Sweep.id == sid)
            .values(status=store.SweepStatus.running, started_at=store.utcnow())
        )
        session.commit()
    out = " ".join(cli.invoke(cli_app, ["status", sid]).stdout.split())
    assert "training: 25% (300/1,200 lane-steps" in out and "100 lane-steps/s" in out
    assert "ETA 9 s" in out or "ETA 8 s" in out  # the driver's, less the seconds since


def test_status_while_starting_names_the_stage(server, cli):
    sid = _queued(server)
    _progress(server, sid, Progress(stage="starting"))
    out = " ".join(cli.invoke(cli_app, ["status", sid]).stdout.split())
    assert "starting (MLflow, Ray, compiles ahead)" in out and "0/0" not in out


def test_status_names_the_store_and_links_the_runs_view(server, cli):
    sid = _queued(server)
    uri = "sqlite:////srv/goldilocks/mlflow.db"
    with server.app.state.sessions() as session:
        store.record_driver(
            session, sweep_id=sid, tracking_uri=uri, experiment_id="4", parent_run_id="abc"
        )
    with server.client() as api:
        mlflow = api.get(f"/sweeps/{sid}").json()["mlflow"]
    ui = server.settings.mlflow_ui_url  # configured: the links point there, no command
    assert mlflow["tracking_uri"] == uri and mlflow["ui_command"] is None
    assert mlflow["experiment_url"] == f"{ui}/#/experiments/4/runs?{ML}"
    assert mlflow["parent_run_url"] == f"{ui}/#/experiments/4/runs/abc?{ML}"
    out = cli.invoke(cli_app, ["status", sid]).stdout
    assert uri in out and f"#/experiments/4/runs/abc?{ML}" in out


def test_without_a_ui_url_the_service_says_how_to_open_its_store(tmp_path):
    settings = paused_settings(tmp_path, mlflow_ui_url=None, tracking_uri=None)
    with live_server(settings) as server:
        sid = _queued(server)
        with server.app.state.sessions() as session:
            store.record_driver(
                session, sweep_id=sid, tracking_uri=settings.mlflow_uri, experiment_id="2"
            )
        with server.client() as api:
            mlflow = api.get(f"/sweeps/{sid}").json()["mlflow"]
    assert mlflow["tracking_uri"] == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert mlflow["ui_command"] == f"mlflow ui --backend-store-uri {mlflow['tracking_uri']}"


def test_submit_checks_the_spec_before_uploading_its_data(server, cli, tmp_path):
    (tmp_path / "table.csv").write_text("a,b,y\n" + "1,2,0\n3,4,1\n" * 20)
    raw = service_spec("typo", data={"path": "table.csv", "target": "y"})
    raw["search"]["optimizer"] = ["adamx"]
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump(raw))
    with server.client() as api:
        before = api.get("/datasets").json()["total"]
        result = cli.invoke(cli_app, ["submit", str(spec)])
        assert result.exit_code == 2, result.output
        assert "search.optimizer: unknown optimizer 'adamx'" in " ".join(result.stderr.split())
        assert "nothing was uploaded" in result.stderr and "uploaded data" not in result.stderr
        assert api.get("/datasets").json()["total"] == before
