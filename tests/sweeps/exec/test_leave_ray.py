"""The end of a Ray command: `ray.shutdown` in bounded time (a Ray whose head is gone would
hold the process 60 s and end it with exit 1, though the sweep succeeded and says so)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from ray_cluster import base_env

from sweeps.exec.raytune import cluster


@pytest.fixture
def fake_ray(monkeypatch):
    """A Ray that is connected and whose shutdown hangs until the process "exits"."""
    exited: list[int] = []
    gone = threading.Event()

    def hang():
        assert gone.wait(10), "leave_ray never gave up on the shutdown"

    def exit_now(code):
        exited.append(code)
        gone.set()

    monkeypatch.setattr(cluster.ray, "is_initialized", lambda: True)
    monkeypatch.setattr(cluster.ray, "shutdown", hang)
    monkeypatch.setattr(cluster.os, "_exit", exit_now)
    monkeypatch.setattr(cluster, "LEAVE_CLUSTER_S", 0.2)
    monkeypatch.setattr(cluster, "LEAVE_LOCAL_S", 5.0)
    return exited


def test_a_hanging_shutdown_ends_the_process_with_the_commands_own_code(fake_ray):
    cluster.leave_ray(exit_code=0, address="127.0.0.1:6379")
    assert fake_ray == [0]


def test_a_shutdown_that_returns_exits_nothing(monkeypatch, fake_ray):
    monkeypatch.setattr(cluster.ray, "shutdown", lambda: None)
    cluster.leave_ray(exit_code=0, address="127.0.0.1:6379")
    assert fake_ray == []


LOCAL_RAY_ENDS = """
import psutil, ray
from sweeps.exec.raytune import cluster
from sweeps.spec import parse_spec
from conftest import tiny_spec_dict

cluster.init_ray(parse_spec(tiny_spec_dict()))
ours = psutil.Process().children(recursive=True)
assert cluster._stop_autoscaler_monitor() == 1  # found where this Ray version runs it
cluster.leave_ray(exit_code=0)
assert not ray.is_initialized()
_, alive = psutil.wait_procs(ours, timeout=10)
print("alive:", [p.name() for p in alive])
"""


def test_a_local_ray_ends_with_every_process_it_started(tmp_path):
    # The autoscaler monitor is ended at once (Ray would give it a second on SIGTERM, in vain);
    # the rest of Ray's processes still go the way `ray.shutdown` takes them.
    tests = Path(__file__).resolve().parents[2]
    env = {**base_env(), "PYTHONPATH": f"{tests.parent}:{tests}"}
    proc = subprocess.run(
        [sys.executable, "-c", LOCAL_RAY_ENDS], env=env, capture_output=True, text=True,
        timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "alive: []" in proc.stdout
