"""The runner keeps one driver started ahead, its imports done (service/standby.py): the next
sweep is handed to it, runs as any driver does, and another standby takes its place."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from svc_testlib import live_server, make_settings, service_spec, wait_for

from service.drivers import is_driver_alive
from service.standby import DRIVER_PID, Standby


def _standby(server):
    runner = server.app.state.runner
    return wait_for(lambda: runner._standby, 60, "a standby driver")


def _imported(pid: int) -> bool:
    """The standby's imports are done: JAX's and Ray's native libraries are mapped."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return "jaxlib" in maps and "_raylet" in maps


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with live_server(make_settings(tmp_path_factory.mktemp("standby"))) as s:
        yield s


def test_a_sweep_is_handed_to_the_standby_and_another_one_is_started(server):
    standby = _standby(server)
    wait_for(lambda: _imported(standby.proc.pid), 120, "the standby's imports")
    with server.client() as api:
        sweep_id = api.post("/sweeps", json=service_spec("standby")).raise_for_status().json()["id"]
        folder = server.settings.sweeps_dir / sweep_id
        wait_for(lambda: (folder / DRIVER_PID).exists(), 60, "the standby to claim the sweep")
        assert (folder / DRIVER_PID).read_text() == str(standby.proc.pid)
        # its command line names no sweep: the claim is how a restarted service knows it
        assert is_driver_alive(standby.proc.pid, sweep_id, folder)
        assert not is_driver_alive(standby.proc.pid, sweep_id)
        done = server.wait_status(sweep_id)
    assert done["status"] == "succeeded", done
    state = json.loads((folder / "sweep.json").read_text())
    assert state["pid"] == standby.proc.pid  # the standby ran the pipeline
    log = (folder / "driver.log").read_text()
    assert "--- attempt 1" in log and "winner" in log  # its output went to the sweep's log
    following = _standby(server)
    assert following.proc.pid != standby.proc.pid and following.proc.poll() is None


def test_a_standby_told_nothing_exits_and_one_of_another_environment_is_not_used(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    standby = Standby.spawn(env, tmp_path)
    assert not standby.ready_for({**env, "JAX_PLATFORMS": "tpu"})  # read by its imports
    assert standby.ready_for({**env, "RAY_AUTH_TOKEN": "another"})  # given at assign
    assert standby.ready_for(env)
    t0 = time.monotonic()
    standby.discard()  # while it still imports
    assert standby.proc.returncode is not None and time.monotonic() - t0 < 10
    assert not standby.ready_for(env)  # dead


def test_a_standby_whose_service_is_gone_exits(tmp_path):
    """Started for a parent that is no longer there: it never waits for a sweep."""
    code = (
        "import os, sys; from service.driver import main; "
        "main(['--parent-pid', str(os.getppid() + 99999), '--standby'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, timeout=60, capture_output=True
    )
    assert done.returncode == 130, done.stderr[-2000:]
