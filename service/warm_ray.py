"""The service's own Ray: one cluster for the service's lifetime, joined by every sweep.

Without it each sweep's driver starts (and stops) a local Ray of its own: seconds of every
small sweep. With it (`GOLDILOCKS_WARM_RAY`, on by default; ignored when `RAY_ADDRESS` names a
cluster to join) the runner starts `ray start --head --block` on loopback the first time a
Ray sweep needs it, with a token of its own (Ray's token auth), and hands every driver the
address and the token. The cluster is a separate process group: a driver that crashes or is
killed takes nothing else down. A head that stopped is started again before the next driver
launches; the sweep that lost it ends as the runner decides for any dead driver (resumed, or
failed with the reason).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
import threading
from pathlib import Path

from service.settings import ServiceSettings
from sweeps.exec.raytune.local_head import free_port, launch_head, reachable, stop_group

log = logging.getLogger(__name__)


class ServiceRay:
    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._token = secrets.token_hex(16)
        self.address: str | None = None
        self.starts = 0  # heads started so far (1 + restarts)

    @property
    def enabled(self) -> bool:
        """Ours to run: warm Ray on, and no cluster named to join instead."""
        return self.settings.warm_ray and not self.settings.ray_address

    @property
    def running(self) -> bool:
        """The head process lives and its GCS answers (`ray start --block` may outlive a
        killed GCS for a while, or a `ray stop --force` elsewhere on the machine)."""
        if self._proc is None or self._proc.poll() is not None or self.address is None:
            return False
        return reachable(self.address)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def ensure(self) -> str:
        """The cluster's address, started (or started again) if it is not running."""
        with self._lock:
            if not self.running:
                if self._proc is not None:
                    log.warning("the service's Ray stopped (exit %s): starting it again",
                                self._proc.poll())  # fmt: skip
                    self._kill_group()
                self._start()
            assert self.address is not None
            return self.address

    def driver_env(self) -> dict[str, str]:
        """What a driver needs to join: Ray's token (the address, and that the cluster is this
        machine, go on its command line: `--ray-address`, `--ray-same-host`)."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self._token}

    def stop(self) -> None:
        with self._lock:
            self._kill_group()
        log.info("the service's Ray stopped")

    def _kill_group(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        stop_group(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)

    def _pid_file(self) -> Path:
        return self.settings.data_dir.resolve() / "ray-head.pid"

    def _stop_orphan(self) -> None:
        """A head left by a service that was killed (kill -9 leaves no time to stop it)."""
        try:
            pid = int(self._pid_file().read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if b"ray" in cmdline and b"--block" in cmdline:
            log.warning("stopping the Ray head (pid %d) a previous service left", pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)

    def _start(self) -> None:
        self._stop_orphan()
        env = {**os.environ, **self.driver_env(), "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)
        log_path = self.settings.data_dir.resolve() / "ray-head.log"
        try:
            self._proc, self.address = launch_head(free_port(), os.cpu_count() or 1, env, log_path)
        except RuntimeError as err:
            raise RuntimeError(f"the service's Ray did not start: {err}") from None
        self._pid_file().write_text(str(self._proc.pid))
        self.starts += 1
        log.info("the service's Ray runs at %s (pid %d)", self.address, self._proc.pid)
