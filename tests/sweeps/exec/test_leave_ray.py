"""The end of a Ray command: `ray.shutdown` in bounded time (a Ray whose head is gone would
hold the process 60 s and end it with exit 1, though the sweep succeeded and says so)."""

from __future__ import annotations

import threading

import pytest

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
