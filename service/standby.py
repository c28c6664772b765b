"""A driver process started before its sweep, so a sweep does not wait for its imports.

A driver spends seconds importing JAX, Flax, optax, Ray Tune and MLflow before it reads its
spec (4-7 s on 2 cores, more than a warm Ray's whole start), and the service knows nothing of
the sweep until it is submitted. So the runner keeps one driver started ahead (`python -m
service.driver --parent-pid PID --standby`): it imports all that at low priority, then waits
for one line on its stdin, the sweep's arguments and folder (`assign`). From there it is an
ordinary driver: it moves to the sweep's folder, writes into its driver.log, claims the
folder by its pid (`DRIVER_PID`: its command line, fixed before it knew the sweep, does not
name it) and runs `goldilocks run|resume` as any driver does. The runner starts the next
standby at once.

A standby is only used with the environment it was started with (a restarted service Ray has
another token): otherwise it is stopped and the sweep gets a fresh driver, as it does when the
standby died or `GOLDILOCKS_STANDBY_DRIVER=0`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

DRIVER_PID = "driver.pid"  # in a sweep folder: the pid of the standby that took the sweep
STANDBY_LOG = "standby-driver.log"  # in the data dir: what a standby says before its sweep


# What the standby's imports may read (JAX's config, thread pools, the import path): a standby
# started with other values of these is not used. Everything else is the sweep's own at `assign`.
READ_AT_IMPORT = (
    "JAX_",
    "XLA_",
    "PYTHON",
    "LD_",
    "OMP_",
    "MKL_",
    "OPENBLAS_",
    "CUDA",
    "TPU_",
    "PATH",
)


def _read_at_import(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(READ_AT_IMPORT)}


class Standby:
    """One driver process waiting for its sweep."""

    def __init__(self, proc: subprocess.Popen, env: dict[str, str]):
        self.proc, self.env = proc, env

    @classmethod
    def spawn(cls, env: dict[str, str], data_dir: Path) -> Standby:
        """Start a standby driver; it follows the calling thread's life (see service.driver)."""
        cmd = [sys.executable, "-m", "service.driver", "--parent-pid", str(os.getpid()),
               "--standby"]  # fmt: skip
        data_dir.mkdir(parents=True, exist_ok=True)
        with (data_dir / STANDBY_LOG).open("ab") as out:
            proc = subprocess.Popen(
                cmd, cwd=data_dir, env=env, stdin=subprocess.PIPE, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return cls(proc, env)

    def ready_for(self, env: dict[str, str]) -> bool:
        """Alive, and started with what the sweep's environment says about its imports (the
        rest of the environment is set at `assign`, before anything reads it)."""
        return self.proc.poll() is None and _read_at_import(self.env) == _read_at_import(env)

    def assign(self, args: list[str], folder: Path, env: dict[str, str]) -> subprocess.Popen:
        """Hand this standby its sweep; it is that sweep's driver from now on."""
        job = {"args": args, "cwd": str(folder), "log": str(folder / "driver.log"), "env": env}
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(job) + "\n").encode())
        self.proc.stdin.close()  # flushes: BrokenPipeError here if it died meanwhile
        return self.proc

    def discard(self) -> None:
        """Stop a standby that will not be used: it has no sweep, so SIGTERM ends it at once
        (exit 130), wherever it is in its imports; SIGKILL if it hangs."""
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin:
                self.proc.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 9)
            self.proc.wait(5)


def await_sweep() -> list[str]:
    """In the standby: import what every driver needs, then wait for the sweep (one JSON line
    on stdin) and become its driver: (the CLI's arguments). EOF (the service discarded it or
    went away) exits 0."""
    with contextlib.suppress(OSError):
        os.nice(10)  # never slow a running sweep down while waiting
    import sweeps.cli  # noqa: F401
    import sweeps.exec.raytune.executor  # noqa: F401  (ray, ray.tune)
    import sweeps.pipeline  # noqa: F401  (jax, flax, optax, the verdict)
    import sweeps.tracking.tracker  # noqa: F401  (mlflow)

    line = sys.stdin.readline()
    if not line:
        sys.exit(0)
    job = json.loads(line)
    with contextlib.suppress(OSError):  # back to normal priority, where allowed (root)
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    os.environ.clear()
    os.environ.update(job["env"])  # read by Ray, MLflow and the settings from here on
    folder = Path(job["cwd"])
    os.chdir(folder)
    fd = os.open(job["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    (folder / DRIVER_PID).write_text(str(os.getpid()))
    return list(job["args"])
