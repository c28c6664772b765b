"""A Ray head on this machine, started once and kept between commands (`goldilocks ray up`).

Each `goldilocks run` on Ray otherwise starts a local Ray and stops it again: 3-7 s of every
sweep on 2 cores. `ray up` starts `ray start --head --block` on loopback in its own process
group, with a token of its own (Ray's token auth), and writes its address and token to
`STATE_DIR/ray-head.json`; `goldilocks run` and `resume` join it when they are given no
other cluster (and say so); `ray down` stops it. The service keeps its own head the same way
(service/warm_ray.py) with `launch_head`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sweeps.folder import pid_alive

RAY = str(Path(sys.executable).parent / "ray")
READY = b"Ray runtime started"
START_TIMEOUT_S = 120.0
HEAD_FILE = "ray-head.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reachable(address: str, timeout: float = 2.0) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def launch_head(
    port: int, cpus: int, env: dict[str, str], log_path: Path
) -> tuple[subprocess.Popen, str]:
    """Start `ray start --head --block` on loopback in its own process group (a command or
    driver that ends takes nothing with it); (the process, its address) once Ray says it
    runs. RuntimeError with the end of its log if it does not start."""
    cmd = [RAY, "start", "--head", "--block", f"--port={port}", f"--num-cpus={cpus}",
           "--include-dashboard=false", "--disable-usage-stats",
           "--node-ip-address=127.0.0.1"]  # fmt: skip
    # On SIGTERM Ray 2.60's `ray start --block` drains its node for up to 30 s first, so that
    # a cluster can move work elsewhere; a head kept on one machine has nowhere to move it (its
    # warm trainer is a detached actor and never drains): `ray down` waited the full 30 s.
    env = {**env, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        out.write(f"--- {' '.join(cmd)}\n".encode())
        out.flush()
        start = log_path.stat().st_size
        proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if READY in log_path.read_bytes()[start:]:
            return proc, f"127.0.0.1:{port}"
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    tail = log_path.read_bytes()[start:][-2000:].decode(errors="replace")
    stop_group(proc.pid)
    raise RuntimeError(f"Ray did not start: {tail.strip()}")


def stop_group(pid: int, timeout: float = 30.0) -> None:
    """`ray start --block` stops the processes it started when told to stop; SIGKILL after
    `timeout`. Then the head's workers go too (see `_end`)."""
    workers = _descendants(pid)
    _stop_leader(pid, timeout)
    _end(workers)


def _stop_leader(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


@dataclass
class KeptHead:
    address: str
    token: str
    pid: int
    cpus: int

    def env(self) -> dict[str, str]:
        """What a driver needs to join it."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}


def start(state_dir: Path, cpus: int | None = None) -> KeptHead:
    """Start a kept head (or return the one already running)."""
    running = find(state_dir)
    if running is not None:
        return running
    token = secrets.token_hex(16)
    cpus = cpus or os.cpu_count() or 1
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, RAY_USAGE_STATS_ENABLED="0")
    proc, address = launch_head(free_port(), cpus, env, Path(state_dir) / "ray-head.log")
    head = KeptHead(address, token, proc.pid, cpus)
    path = Path(state_dir) / HEAD_FILE
    path.write_text(json.dumps(asdict(head)))
    path.chmod(0o600)  # the token lets anyone who reads it run code on the cluster
    return head


def find(state_dir: Path) -> KeptHead | None:
    """The kept head, if one runs (a file left by a head that died is removed)."""
    path = Path(state_dir) / HEAD_FILE
    try:
        head = KeptHead(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if pid_alive(head.pid) and reachable(head.address):
        return head
    path.unlink(missing_ok=True)
    return None


def stop(state_dir: Path) -> KeptHead | None:
    """Stop the kept head; the one stopped, or None if none ran."""
    head = find(state_dir)
    if head is not None:
        stop_group(head.pid)
    (Path(state_dir) / HEAD_FILE).unlink(missing_ok=True)
    return head


def _descendants(pid: int) -> list:
    import psutil

    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).children(recursive=True)
    return []


def _end(processes: list, timeout: float = 5.0) -> None:
    """Ray's workers (the warm trainer among them: warm.py) run in process groups of their own
    and leave only once they notice their raylet is gone: with the head stopped, `ray down`
    ends them, so nothing the head started outlives it."""
    import psutil

    for proc in processes:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
