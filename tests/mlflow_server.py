"""A real MLflow tracking server for tests: PostgreSQL backend store, proxied artifacts.

`start_mlflow_server(backend_uri, artifacts_dir)` launches `mlflow server` on a free port and
yields its base URL once GET /health answers; the process group is terminated on exit.
`postgres_database()` (testlib.py) yields the URI of a fresh, uniquely named database and drops it after, so
reruns start clean. The session fixture `mlflow_server` combines the two; when PostgreSQL is not
reachable (GOLDILOCKS_TEST_PG_URL, default postgresql://postgres@127.0.0.1:5432/test) it falls
back to a SQLite backend so the HTTP path is still tested.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from testlib import free_port, pg_admin_url, postgres_database

STARTUP_TIMEOUT_S = 90  # a fresh database runs all of MLflow's migrations first


@contextlib.contextmanager
def start_mlflow_server(
    backend_uri: str, artifacts_dir: Path, timeout: float = STARTUP_TIMEOUT_S
) -> Iterator[str]:
    """Run `mlflow server` until the block exits; yields "http://127.0.0.1:<port>"."""
    artifacts_dir = Path(artifacts_dir)
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend_uri,
        "--artifacts-destination", str(artifacts_dir),  # served through the server (proxied)
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    # no usage telemetry from tests; no background job runner (tests submit no server jobs)
    env = {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    log_path = artifacts_dir.parent / f"mlflow-server-{port}.log"
    with open(log_path, "wb") as log_file:
        # own session: the server forks workers, and terminating the group stops them all
        proc = subprocess.Popen(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, timeout, log_path)
        yield url
    finally:
        _stop(proc)


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited ({proc.returncode}):\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise RuntimeError(f"mlflow server not healthy after {timeout:g} s:\n{_tail(log_path)}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no server log)"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URI of a tracking server shared by the session (PostgreSQL-backed when available)."""
    root = tmp_path_factory.mktemp("mlflow-server")
    admin = pg_admin_url()
    with contextlib.ExitStack() as stack:
        if admin is not None:
            backend = stack.enter_context(postgres_database(admin))
        else:
            print("mlflow_server: PostgreSQL unreachable; using a SQLite backend store")
            backend = f"sqlite:///{root / 'server.db'}"
        yield stack.enter_context(start_mlflow_server(backend, root / "artifacts"))
