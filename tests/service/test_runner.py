"""The runner's start-up recovery, decided from the job store and the sweep folder alone (no
driver is started): a sweep the table says is running never stays stuck in running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import deque

import pytest
from sqlalchemy import update
from svc_testlib import make_settings, tracking_client, wait_for

from service import store
from service.drivers import is_driver_alive
from service.runner import Runner


@pytest.fixture(scope="module")
def mlflow_client():
    return tracking_client()


@pytest.fixture
def runner(tmp_path):
    settings = make_settings(tmp_path)
    store.upgrade_to_head(settings.db_url)
    engine = store.make_engine(settings.db_url)
    yield Runner(settings, store.session_factory(engine))
    engine.dispose()


def _running(runner: Runner, *, attempts: int, folder_status: str | None, **row) -> str:
    """A sweep the table says is running, with a dead driver and a folder saying `status`."""
    with runner.sessions() as s:
        sweep = store.create_sweep(s, name="r", spec={"name": "r"}, executor="inline")
        store.claim_next_queued(s)
        s.execute(
            update(store.Sweep)
            .where(store.Sweep.id == sweep.id)
            .values(attempts=attempts, pid=2**22 + 12345, **row)  # a pid nobody has
        )
        s.commit()
    folder = runner.folder(sweep.id)
    folder.mkdir(parents=True)
    if folder_status:
        (folder / "spec.json").write_text("{}")
        (folder / "sweep.json").write_text(
            json.dumps({"sweep_id": sweep.id, "status": folder_status})
        )
    return sweep.id


def _stale_runs(runner: Runner, client, sweep_id: str) -> list[str]:
    """MLflow runs left RUNNING by a dead driver, listed in the folder's mlflow_state.json."""
    eid = client.create_experiment(f"runner-{sweep_id}")
    parent = client.create_run(eid).info.run_id
    child = client.create_run(eid, tags={"mlflow.parentRunId": parent}).info.run_id
    state = {
        "tracking_uri": os.environ["MLFLOW_TRACKING_URI"],
        "experiment_id": eid,
        "parent_run_id": parent,
        "runs": {"0": child},
    }
    (runner.folder(sweep_id) / "mlflow_state.json").write_text(json.dumps(state))
    return [parent, child]


def _sweep(runner: Runner, sweep_id: str) -> store.Sweep:
    with runner.sessions() as s:
        return store.get_sweep(s, sweep_id=sweep_id)


def test_interrupted_sweep_is_queued_for_resume(runner):
    sweep_id = _running(runner, attempts=1, folder_status="interrupted")
    runner.recover()
    assert _sweep(runner, sweep_id).status == "running"
    assert runner._resume == deque([sweep_id])


def test_gives_up_after_the_resume_attempts_and_closes_runs_failed(runner, mlflow_client):
    sweep_id = _running(runner, attempts=3, folder_status="running")  # 1 run + 2 resumes
    runs = _stale_runs(runner, mlflow_client, sweep_id)
    runner.recover()
    sweep = _sweep(runner, sweep_id)
    assert sweep.status == "failed" and sweep.finished_at is not None
    assert "cannot resume: 2 resume attempt(s) failed" in sweep.error
    assert "folder says running" in sweep.error
    assert [mlflow_client.get_run(r).info.status for r in runs] == ["FAILED", "FAILED"]
    assert "cannot resume" in mlflow_client.get_run(runs[0]).data.tags["goldilocks.error"]
    assert not runner._resume


def test_sweep_that_finished_while_the_service_was_down_is_recorded(runner):
    sweep_id = _running(runner, attempts=1, folder_status="succeeded")
    runner.recover()
    assert _sweep(runner, sweep_id).status == "succeeded"


def test_cancel_requested_before_the_crash_ends_cancelled(runner, mlflow_client):
    sweep_id = _running(runner, attempts=1, folder_status="running", cancel_requested=True)
    runs = _stale_runs(runner, mlflow_client, sweep_id)
    runner.recover()
    assert _sweep(runner, sweep_id).status == "cancelled"
    assert [mlflow_client.get_run(r).info.status for r in runs] == ["KILLED", "KILLED"]


def test_lost_mlflow_state_is_not_resumed_into_duplicate_runs(runner):
    sweep_id = _running(runner, attempts=1, folder_status="interrupted", parent_run_id="abc")
    runner.recover()
    sweep = _sweep(runner, sweep_id)
    assert sweep.status == "failed" and "lost mlflow_state.json" in sweep.error


def test_claimed_but_never_started_runs_again_from_scratch(runner):
    sweep_id = _running(runner, attempts=1, folder_status=None)  # crashed before the driver
    runner.recover()
    assert runner._resume == deque([sweep_id])
    assert not (runner.folder(sweep_id) / "sweep.json").exists()  # _launch will `run`, not resume


def test_a_reused_pid_is_not_taken_for_the_driver():
    assert not is_driver_alive(os.getpid(), "f" * 32)  # alive, but not a driver of that sweep
    assert not is_driver_alive(None, "f" * 32)


def test_an_old_driver_that_outlives_its_service_is_stopped_then_resumed(tmp_path):
    """A previous service's driver that ignores its SIGTERM-on-death is stopped by the next
    service after the grace period (SIGTERM, then SIGKILL), then its sweep is resumed."""
    settings = make_settings(tmp_path, cancel_grace_s=0.3)
    store.upgrade_to_head(settings.db_url)
    runner = Runner(settings, store.session_factory(store.make_engine(settings.db_url)))
    sweep_id = _running(runner, attempts=1, folder_status="running")
    # looks like that sweep's driver (the runner checks /proc/<pid>/cmdline) and ignores SIGTERM
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
    fake = subprocess.Popen(
        [sys.executable, "-c", code, "service.driver", sweep_id], start_new_session=True
    )
    try:
        with runner.sessions() as s:
            s.execute(update(store.Sweep).where(store.Sweep.id == sweep_id).values(pid=fake.pid))
            s.commit()
        time.sleep(0.5)  # the interpreter has set its SIGTERM handler
        runner.recover()
        assert sweep_id in runner._drivers and not runner._resume  # adopted, not resumed beside it

        def stopped() -> bool:
            runner._watch_drivers()
            fake.poll()  # reap it: we are its parent here, not the runner
            return sweep_id in runner._resume

        wait_for(stopped, 30, "the old driver to be stopped")
        assert fake.returncode == -signal.SIGKILL  # it ignored SIGTERM
        assert _sweep(runner, sweep_id).status == "running"  # to be resumed, not failed
    finally:
        fake.kill()
        fake.wait()


def test_a_graceful_shutdown_spends_no_resume_attempt(runner):
    sweep_id = _running(runner, attempts=1, folder_status="interrupted")
    runner.stopping = True  # the service is shutting down and stopped this driver itself
    runner._after_exit(sweep_id, 130)
    sweep = _sweep(runner, sweep_id)
    assert sweep.status == "running" and sweep.attempts == 0  # resumed at the next start
    assert not runner._resume
