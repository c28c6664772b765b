"""Driver processes as the runner sees them: one sweep each, in its own session and process
group; signalled gracefully (SIGTERM, the driver's to orchestrate) or for sure (SIGKILL to the
group); known alive by pid, command line and the claim a standby driver writes; started with
the environment that imports this tree."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from service.settings import ServiceSettings
from service.standby import DRIVER_PID
from sweeps.errors import EXIT_INTERRUPTED
from sweeps.folder import pid_alive

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Driver:
    """One driver process. `proc` is None for a driver adopted from a previous service."""

    sweep_id: str
    folder: Path
    pid: int
    proc: subprocess.Popen | None = None
    log_file: IO[bytes] | None = None
    term_sent: float | None = None
    killed: bool = False
    mlflow_recorded: bool = False
    started: float = field(default_factory=time.monotonic)
    overtime: bool = False  # stopped by us for running past max_sweep_s

    def exited(self) -> tuple[bool, int | None]:
        """(has it exited, its exit code: negative for a signal, None if unknowable)."""
        if self.proc is not None:
            rc = self.proc.poll()
            return rc is not None, rc
        return not is_driver_alive(self.pid, self.sweep_id, self.folder), None

    def terminate(self) -> None:
        """Ask for a graceful stop (the driver turns SIGTERM into an interrupt)."""
        if self.term_sent is None:
            self.term_sent = time.monotonic()
            self._signal(signal.SIGTERM, group=False)

    def kill(self) -> None:
        """SIGKILL the whole group: the driver and anything it started (local Ray too)."""
        self.killed = True
        self._signal(signal.SIGKILL, group=True)

    def _signal(self, sig: signal.Signals, *, group: bool) -> None:
        if self.proc is None and not is_driver_alive(self.pid, self.sweep_id, self.folder):
            return  # never signal a pid that may have been reused by another process
        with contextlib.suppress(ProcessLookupError, PermissionError):
            # The driver leads its own session (start_new_session), so its pgid is its pid.
            # Only SIGKILL goes to the group: a graceful stop is the driver's to orchestrate
            # (Ray Tune must still save its state through its worker processes).
            if group:
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)

    def close_log(self) -> None:
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None


def is_driver_alive(pid: int | None, sweep_id: str, folder: Path | None = None) -> bool:
    """Is `pid` alive and still the driver of this sweep (not a reused pid, not a zombie)?
    A driver started as a standby is known by the claim it wrote into the sweep's `folder`."""
    if not pid_alive(pid):  # gone, or someone else's process now: ours would be ours
        return False
    proc = Path(f"/proc/{pid}")
    if not proc.exists():  # not Linux: trust the signal probe
        return True
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes().decode("utf-8", "replace")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    if state in ("Z", "X") or "service.driver" not in cmdline:
        return False
    return sweep_id in cmdline or ("--standby" in cmdline and _claimed(folder, pid))


def _claimed(folder: Path | None, pid: int) -> bool:
    try:
        return folder is not None and (folder / DRIVER_PID).read_text().strip() == str(pid)
    except OSError:
        return False


def describe_stop(rc: int | None, said: str | None) -> str:
    if rc == EXIT_INTERRUPTED:
        return "interrupted"
    if rc is not None and rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    if rc is not None:
        return f"exit code {rc}"
    return f"its process is gone; folder says {said or 'nothing yet'}"


def driver_env(settings: ServiceSettings | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env["PYTHONUNBUFFERED"] = "1"
    # The driver imports `service` and `sweeps` from the same tree as the service, whatever
    # its working directory (the sweep folder); the plugin folders come last, as in the
    # service (service.plugins.ensure_importable): a dotted module resolves the same in both.
    plugin_dirs = [str(d) for d in settings.plugin_dirs] if settings else []
    parts = (str(REPO_ROOT), env.get("PYTHONPATH", ""), *plugin_dirs)
    env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)
    return env
