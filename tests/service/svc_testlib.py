"""Helpers for the service tests: live servers on loopback, tiny specs, MLflow and PostgreSQL.

A server runs the real app under uvicorn, in a thread of the test process (fast to start: the
modules are already imported) or, where the test kills it, as a `goldilocks serve` process.
Drivers are always real processes logging to the session's scratch MLflow store.

Not a conftest.py: conftest modules outside packages share the module name "conftest", and a
second one would shadow tests/conftest.py for `from conftest import tiny_spec_dict` elsewhere.
Test modules import the fixtures they use from here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from conftest import tiny_spec_dict
from testlib import free_port, postgres_database  # noqa: F401 (postgres_database: re-exported)

from service.app import create_app
from service.settings import ServiceSettings

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-token-0123456789"
TERMINAL = ("succeeded", "failed", "cancelled")


def service_spec(name: str, *, steps: int = 20, eval_every: int = 10, **overrides) -> dict:
    """3 lanes (adam x 3 LRs), iris, mlp [8]: a driver finishes in seconds after start-up.
    Each test names its own experiment, so MLflow queries see only its runs."""
    raw = tiny_spec_dict(
        name=name,
        experiment=f"svc-{name}-{uuid.uuid4().hex[:6]}",
        model={"name": "mlp", "hidden": [8]},
    )
    raw["train"].update(steps=steps, eval_every=eval_every)
    raw["search"].update(
        learning_rate={"min": 1e-3, "max": 1.0, "num": 3, "scale": "log"}, optimizer=["adam"]
    )
    raw.update(overrides)
    return raw


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


class LiveServer:
    """The app under uvicorn in a thread, on a socket bound before it starts (no port race)."""

    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self.app = create_app(settings)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        token = settings.token()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def start(self) -> LiveServer:
        self.thread.start()
        wait_for(lambda: self.server.started, 120, "the server to start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)
        self.sock.close()

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=60, **kwargs)

    def sweep(self, sweep_id: str) -> dict:
        with self.client() as c:
            r = c.get(f"/sweeps/{sweep_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait_status(self, sweep_id: str, statuses=TERMINAL, timeout: float = 240) -> dict:
        return wait_for(
            lambda: (s := self.sweep(sweep_id))["status"] in statuses and s,
            timeout,
            f"sweep {sweep_id} to reach {statuses}",
            every=0.5,
        )


def make_settings(tmp: Path, **overrides) -> ServiceSettings:
    values: dict[str, Any] = {
        "data_dir": tmp,
        "executor": "inline",
        "tracking_uri": os.environ["MLFLOW_TRACKING_URI"],
        "mlflow_ui_url": "http://127.0.0.1:5000",
        "poll_interval_s": 0.2,
        "cancel_grace_s": 10.0,
    }
    return ServiceSettings(**{**values, **overrides})


def tracking_client():
    """An MlflowClient on the session's scratch store (tests/conftest.py sets the URI)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    client.search_experiments()  # creates the store (MLflow's migrations) before any driver
    return client


def sweep_runs(client, sweep: dict, kind: str = "lane") -> list:
    """The MLflow runs tagged with this sweep's id (kind: lane or sweep)."""
    eid = sweep["mlflow"]["experiment_id"]
    return client.search_runs(
        [eid],
        filter_string=f"tags.`goldilocks.sweep_id` = '{sweep['id']}' "
        f"and tags.`goldilocks.kind` = '{kind}'",
        max_results=1000,
    )


# --------------------------------------------------------------------------- servers


@contextlib.contextmanager
def live_server(settings: ServiceSettings) -> Iterator[LiveServer]:
    server = LiveServer(settings).start()
    try:
        yield server
    finally:
        server.stop()


def paused_settings(tmp: Path, **overrides) -> ServiceSettings:
    """Token required, runner paused (max_running 0): sweeps are accepted and stay queued.
    For everything that needs no driver: validation, auth, idempotency, queue, fuzzing."""
    values = {"api_token": TOKEN, "max_running": 0, "max_queue": 4, "max_body_bytes": 64 * 1024}
    return make_settings(tmp, **{**values, **overrides})


class ServiceProcess:
    """`goldilocks serve` as a process of its own: a test can kill -9 it."""

    def __init__(self, data_dir: Path, **env: str):
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "GOLDILOCKS_DATA_DIR": str(data_dir),
            "GOLDILOCKS_EXECUTOR": "inline",
            "GOLDILOCKS_POLL_INTERVAL_S": "0.2",
            "GOLDILOCKS_DRIVER_STOP_TIMEOUT_S": "45",
            "PYTHONPATH": str(REPO),
            **env,
        }
        self.proc: subprocess.Popen | None = None
        self.log = data_dir / "service.log"

    def start(self) -> ServiceProcess:
        cmd = [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port)]
        cmd += ["--log-level", "info"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=self.data_dir, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for(self._up, 180, "goldilocks serve to answer")
        return self

    def _up(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        try:
            return httpx.get(self.url + "/healthz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# --------------------------------------------------------------------------- PostgreSQL
