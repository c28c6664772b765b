"""The servers the fault suite kills and restarts: each one private to its test, so a fault
never touches what the rest of the machine (or another test run) uses.

- `MlflowServer`: a real `mlflow server` on a port that stays the same across restarts (a
  tracking client retries the same URL), killed with SIGKILL to its whole process group.
- `PrivatePostgres`: a PostgreSQL instance of its own (`initdb` + `pg_ctl`, run as the
  `postgres` user) on a free loopback port, restarted with `pg_ctl restart -m fast`. The
  machine's shared PostgreSQL on 5432 is never restarted.
- `RayCluster`: `ray start --head` + nodes with a temp dir of their own, so its processes are
  found by their command line: the head can be killed with SIGKILL, and the end stops this
  cluster's processes only (`ray stop --force` would stop every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ray_cluster import RAY, base_env
from testlib import free_port

# --------------------------------------------------------------------------- MLflow


class MlflowServer:
    """`mlflow server` on a fixed loopback port; `kill9()` then `start()` brings it back at
    the same URL, on the same backend store and artifacts."""

    def __init__(self, backend_uri: str, root: Path, port: int | None = None):
        self.backend_uri = backend_uri
        self.root = Path(root)
        self.artifacts = self.root / "artifacts"
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.root / f"mlflow-server-{self.port}.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 120) -> float:
        """Start it and wait for GET /health; the seconds that took."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        cmd = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", self.backend_uri,
            "--artifacts-destination", str(self.artifacts),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]  # fmt: skip
        env = {
            **os.environ,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        t0 = time.monotonic()
        with self.log.open("ab") as log:
            log.write(f"\n---- start {self.starts + 1}\n".encode())
            log.flush()
            # own session: the server forks workers; the group is what a kill must reach
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.starts += 1
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({self.proc.returncode}):\n{self.tail()}")
            if self.healthy():
                return time.monotonic() - t0
            time.sleep(0.2)
        raise RuntimeError(f"mlflow server not healthy after {timeout:g} s:\n{self.tail()}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def kill9(self) -> None:
        """SIGKILL to the server's process group (the server and its workers), then reap it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill9()

    def tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return "(no server log)"


# --------------------------------------------------------------------------- PostgreSQL

PG_BIN = Path("/usr/local/bin")


def private_postgres_unavailable() -> str | None:
    """Why a private PostgreSQL cannot be started here (None: it can)."""
    for tool in ("initdb", "pg_ctl"):
        if not (PG_BIN / tool).exists() and shutil.which(tool) is None:
            return f"{tool} is not installed"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no `postgres` user to run initdb/pg_ctl as"
    if os.geteuid() != 0 and pwd.getpwuid(os.geteuid()).pw_name != "postgres":
        return "neither root nor postgres: cannot run initdb as the postgres user"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "runuser is not installed"
    return None


class PrivatePostgres:
    """A PostgreSQL cluster of its own: trust auth, loopback only, a free port, its socket in
    its own folder. `restart()` is `pg_ctl restart -m fast` (every connection dropped)."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: that is root's, mode 0700, and the server runs as postgres.
        self.root = Path(tempfile.mkdtemp(prefix="gl-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        user = pwd.getpwnam("postgres")
        os.chown(self.root, user.pw_uid, user.pw_gid)

    def _tool(self, tool: str) -> str:
        path = PG_BIN / tool
        return str(path) if path.exists() else str(shutil.which(tool))

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [self._tool(args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {done.stderr[-2000:]}\n{self.tail()}")
        return done

    def start(self) -> PrivatePostgres:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.up()
        return self

    def _options(self) -> str:
        return f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"

    def restart(self) -> float:
        """`pg_ctl restart -m fast`: every session ended, the server back up; its seconds."""
        t0 = time.monotonic()
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-m", "fast", "-o", self._options(), "restart")  # fmt: skip
        return time.monotonic() - t0

    def down(self) -> None:
        """`pg_ctl stop -m fast`: the server stopped (its data kept) until `up()`."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def up(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-o", self._options(), "start")  # fmt: skip

    def create_database(self, name: str) -> str:
        """A new database; its SQLAlchemy URI (psycopg 3 named as the driver)."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return "(no postgres log)"


# --------------------------------------------------------------------------- Ray

# the processes of a head node, besides its raylet (whose socket is sockets/raylet, the nodes
# added after it have sockets/raylet.1, .2, ...)
_HEAD_PROCESSES = ("gcs_server", "autoscaler/_private/monitor.py", "dashboard/dashboard.py")


class RayCluster:
    """`ray start --head` (+ nodes) on loopback with token auth and a temp dir of its own."""

    def __init__(self, head_cpus: int = 1, node_cpus: tuple[int, ...] = ()):
        self.head_cpus, self.node_cpus = head_cpus, node_cpus
        # short: Ray's unix socket paths live under it (107 characters at most)
        self.temp_dir = f"/tmp/glray-{secrets.token_hex(4)}"
        self.auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
        self.address = f"127.0.0.1:{free_port()}"

    def start(self) -> RayCluster:
        env = base_env(**self.auth)
        common = ["--node-ip-address=127.0.0.1", "--disable-usage-stats"]
        try:
            subprocess.run(
                [RAY, "start", "--head", f"--port={self.address.split(':')[1]}",
                 f"--num-cpus={self.head_cpus}", f"--temp-dir={self.temp_dir}",
                 "--include-dashboard=false", *common],
                check=True, env=env, capture_output=True, timeout=180,
            )  # fmt: skip
            for cpus in self.node_cpus:
                subprocess.run(
                    [RAY, "start", f"--address={self.address}", f"--num-cpus={cpus}", *common],
                    check=True, env=env, capture_output=True, timeout=180,
                )  # fmt: skip
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> RayCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def processes(self) -> dict[int, str]:
        """pid -> command line of every process of this cluster (found by its temp dir)."""
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                args = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
            except OSError:
                continue
            if self.temp_dir in args:
                found[int(entry.name)] = args
        return found

    def head_processes(self) -> dict[int, str]:
        """The head node's own processes: GCS, its raylet, the monitor and dashboard."""
        return {
            pid: args
            for pid, args in self.processes().items()
            if any(p in args for p in _HEAD_PROCESSES) or "/sockets/raylet " in args
        }

    def kill_head(self) -> list[str]:
        """SIGKILL to every head-node process at once; the names of what was killed."""
        head = self.head_processes()
        for pid in head:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return sorted(_process_name(args) for args in head.values())

    def stop(self) -> None:
        """SIGKILL to this cluster's processes only, until none is left (bounded)."""
        deadline = time.monotonic() + 30
        while (left := self.processes()) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _process_name(args: str) -> str:
    """gcs_server, raylet, or the script a Python process runs (monitor.py, dashboard.py)."""
    words = args.split()
    scripts = [w for w in words[1:] if w.endswith(".py")]
    return Path(scripts[0] if "python" in Path(words[0]).name and scripts else words[0]).name
