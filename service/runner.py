"""The runner: a background thread that turns queued sweeps into driver processes.

Each running sweep is its own driver process (`python -m service.driver -- run ...`), in its own
session and process group: a cancel can stop it for sure (SIGTERM, then SIGKILL to the group
after a grace period), and a crash in one sweep cannot take the service down. The database is
the queue (its bound is enforced at submit); the thread claims queued sweeps while fewer than
`max_running` drivers run, watches them (exit code + the folder's sweep.json) and records
status, timestamps and MLflow ids.

Restarts. A driver asks the kernel for a signal when the service dies (see service.driver), so
after a crash or `kill -9` of the service its drivers stop gracefully: sweep folder
"interrupted", MLflow runs KILLED. At start-up `recover()` looks at every sweep the table says
is running: it waits for the old driver to exit, then resumes it (`goldilocks resume`, which
reuses its MLflow runs and restores Ray Tune's state), or records how it really ended. After
`max_resume_attempts` failed resumes the sweep is marked failed with the reason and its stale
MLflow runs are closed FAILED: never stuck in running, never two drivers (or two sets of
MLflow runs) for one sweep.

One runner per database: two services sharing a database would each resume the other's sweeps.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, Any

from sqlalchemy.orm import Session, sessionmaker

from service import store
from service.drivers import Driver, describe_stop, driver_env, is_driver_alive
from service.folders import ATTEMPT_MARK, log_tail, read_state
from service.settings import ServiceSettings
from service.standby import Standby
from service.store import SweepStatus
from service.submit import driver_spec
from service.warm_ray import ServiceRay
from sweeps.errors import EXIT_BAD_INPUT, EXIT_FAILED
from sweeps.folder import (
    DRIVER_LOG,
    MLFLOW_STATE,
    SUBMITTED,
    SweepFolder,
    TrackingState,
)

log = logging.getLogger(__name__)


class Runner:
    def __init__(self, settings: ServiceSettings, sessions: sessionmaker[Session]):
        self.settings = settings
        self.sessions = sessions
        self._drivers: dict[str, Driver] = {}
        self._resume: deque[str] = deque()  # sweeps (status running) waiting for a new driver
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stopping = False
        self.last_tick: float | None = None
        self.ray = ServiceRay(settings)  # started when a Ray sweep first needs it
        self._standby: Standby | None = None  # the next sweep's driver, imported ahead

    # ---- lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="goldilocks-runner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Interrupt the running drivers (their sweeps stay `running`, resumed at the next
        start) and end the thread."""
        self.stopping = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.settings.cancel_grace_s + 30)

    def wake(self) -> None:
        """Look at the table now (a sweep was submitted or a cancel requested)."""
        self._wake.set()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def running_count(self) -> int:
        return len(self._drivers)

    def _main(self) -> None:
        # Drivers are told to stop when *this thread* ends (PR_SET_PDEATHSIG follows the
        # forking thread): it must never die of an exception while the service lives.
        try:
            self._guarded(self.recover)
            while not self._stop.is_set():
                self._guarded(self.tick)
                self.last_tick = time.monotonic()
                self._wake.wait(self.settings.poll_interval_s)
                self._wake.clear()
        finally:
            self._guarded(self._discard_standby)
            self._guarded(self._shutdown_drivers)
            self._guarded(self.ray.stop)

    @staticmethod
    def _guarded(fn: Any) -> None:
        try:
            fn()
        except Exception:
            log.exception("runner: %s failed", getattr(fn, "__name__", fn))

    # ---- one pass

    def tick(self) -> None:
        self._carry_out_cancels()
        self._watch_drivers()
        self._start_drivers()
        self._keep_standby()

    def _carry_out_cancels(self) -> None:
        with self.sessions() as session:
            wanted = [
                s.id
                for s in store.sweeps_with_status(session, status=SweepStatus.running)
                if s.cancel_requested
            ]
        for sweep_id in wanted:
            driver = self._drivers.get(sweep_id)
            if driver is None:  # waiting for a resume, or its driver already gone
                with contextlib.suppress(ValueError):
                    self._resume.remove(sweep_id)
                self._end_cancelled(sweep_id)
            elif driver.term_sent is None:
                log.info("cancelling sweep %s: SIGTERM to driver %d", sweep_id, driver.pid)
                driver.terminate()
            elif (
                not driver.killed
                and time.monotonic() - driver.term_sent > self.settings.cancel_grace_s
            ):
                log.warning("sweep %s: driver %d ignored SIGTERM; SIGKILL", sweep_id, driver.pid)
                driver.kill()

    def _watch_drivers(self) -> None:
        grace = self.settings.cancel_grace_s
        for driver in list(self._drivers.values()):
            if not driver.mlflow_recorded:  # the ids appear once the driver started MLflow
                driver.mlflow_recorded = self._record_mlflow(
                    driver.sweep_id, read_state(driver.folder)
                )
            exited, rc = driver.exited()
            now = time.monotonic()
            if exited:
                driver.close_log()
                # Forgotten only once its end is recorded: with the job store down this raises,
                # and the next tick tries again (every step of it can be repeated).
                self._after_exit(driver.sweep_id, rc, overtime=driver.overtime)
                del self._drivers[driver.sweep_id]
            elif driver.proc is not None and now - driver.started > self.settings.max_sweep_s:
                if driver.term_sent is None:
                    log.warning(
                        "sweep %s: running for over %g s (GOLDILOCKS_MAX_SWEEP_S); stopping it",
                        driver.sweep_id,
                        self.settings.max_sweep_s,
                    )
                    driver.overtime = True
                    driver.terminate()
                elif not driver.killed and now - driver.term_sent > grace:
                    driver.kill()
            elif driver.proc is None:
                # A previous service's driver was told to stop when that service died; one
                # that is still here after the grace period is stopped by us, then resumed.
                if driver.term_sent is None and now - driver.started > grace:
                    log.warning(
                        "sweep %s: old driver %d still running; SIGTERM",
                        driver.sweep_id,
                        driver.pid,
                    )
                    driver.terminate()
                elif driver.term_sent and not driver.killed and now - driver.term_sent > grace:
                    driver.kill()

    def _start_drivers(self) -> None:
        while not self.stopping and len(self._drivers) < self.settings.max_running:
            if self._resume:
                sweep_id = self._resume[0]  # taken off once the store has the new attempt
                with self.sessions() as session:
                    sweep = store.get_sweep(session, sweep_id=sweep_id)
                    if sweep is None or sweep.terminal:  # ended meanwhile (a cancel)
                        self._resume.popleft()
                        continue
                    store.start_attempt(session, sweep_id=sweep_id)
                    sweep = store.get_sweep(session, sweep_id=sweep_id)
                self._resume.popleft()
            else:
                with self.sessions() as session:
                    sweep = store.claim_next_queued(session)
                if sweep is None:
                    return
            self._launch(sweep)

    # ---- the standby driver (service/standby.py)

    def _keep_standby(self) -> None:
        """One driver always imported ahead, started from this thread (its death signal
        follows it)."""
        if not self.settings.standby_driver or self.stopping or not self.settings.max_running:
            return  # (a paused runner starts no driver)
        if self._standby is None or self._standby.proc.poll() is not None:
            self._standby = Standby.spawn(self._driver_env(), self.settings.data_dir)

    def _hand_to_standby(self, args: list[str], folder: Path, env: dict[str, str]):
        """The standby, told its sweep, or None (none ready for this environment)."""
        standby, self._standby = self._standby, None
        if standby is None:
            return None
        if standby.ready_for(env):
            try:
                return standby.assign(args, folder, env)
            except (OSError, ValueError) as err:  # it died just now
                log.warning("the standby driver could not take sweep %s: %s", folder.name, err)
        standby.discard()
        return None

    def _discard_standby(self) -> None:
        standby, self._standby = self._standby, None
        if standby is not None:
            standby.discard()

    def _driver_env(self) -> dict[str, str]:
        """Every driver's environment, whatever its executor (one standby fits any sweep):
        the service Ray's token is fixed for the service's life."""
        ray_env = self.ray.driver_env() if self.ray.enabled else {}
        return {**driver_env(self.settings), **ray_env}

    # ---- drivers

    def folder(self, sweep_id: str) -> Path:
        return self.settings.sweeps_dir / sweep_id

    def _launch(self, sweep: store.Sweep) -> None:
        folder = self.folder(sweep.id)
        uri = self.settings.mlflow_uri
        # A folder that got as far as a sweep.json resumes; otherwise nothing ran yet and the
        # sweep starts again (`run` still reuses any MLflow runs listed in mlflow_state.json).
        resuming = SweepFolder(folder).has_run()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if resuming:
                args = ["resume", str(folder)]
            else:
                spec_file = folder / SUBMITTED
                spec_file.write_text(json.dumps(driver_spec(sweep.spec, self.settings), indent=1))
                args = [
                    "run", str(spec_file), "--out", str(folder),
                    "--executor", sweep.executor, "--sweep-id", sweep.id,
                ]  # fmt: skip
            args += ["--tracking-uri", uri]
            address = self.settings.ray_address
            if sweep.executor == "ray" and self.ray.enabled:
                address = self.ray.ensure()
            if address:
                args += ["--ray-address", address]
            if sweep.executor == "ray" and self.ray.enabled:
                args += ["--ray-same-host"]  # its trials may use programs compiled ahead
            env = self._driver_env()
            log_file: IO[bytes] | None = (folder / DRIVER_LOG).open("ab")
            log_file.write(f"{ATTEMPT_MARK}{sweep.attempts}: {' '.join(args)}\n".encode())
            log_file.flush()
            proc = self._hand_to_standby(args, folder, env)
            if proc is not None:
                log_file.close()  # the standby opens driver.log itself
                log_file = None
            else:
                cmd = [sys.executable, "-m", "service.driver", "--parent-pid", str(os.getpid()),
                       "--", *args]  # fmt: skip
                proc = subprocess.Popen(
                    cmd,
                    cwd=folder,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        # ValueError: driver_spec refused the spec; RuntimeError: the service's Ray did not start
        except (OSError, ValueError, RuntimeError) as err:
            log.error("sweep %s: cannot start its driver: %s", sweep.id, err)
            with self.sessions() as session:
                store.finish_sweep(
                    session,
                    sweep_id=sweep.id,
                    status=SweepStatus.failed,
                    error=f"cannot start the driver: {err}",
                )
            return
        log.info("sweep %s: driver %d started (%s)", sweep.id, proc.pid, args[0])
        self._drivers[sweep.id] = Driver(sweep.id, folder, proc.pid, proc, log_file)
        with self.sessions() as session:
            store.record_driver(session, sweep_id=sweep.id, pid=proc.pid, tracking_uri=uri)

    def _record_mlflow(self, sweep_id: str, state: dict[str, Any]) -> bool:
        info = state.get("mlflow") or {}
        if not info.get("parent_run_id"):
            return False
        with self.sessions() as session:
            store.record_driver(
                session,
                sweep_id=sweep_id,
                tracking_uri=info.get("tracking_uri"),
                experiment_id=str(info.get("experiment_id")),
                parent_run_id=info.get("parent_run_id"),
            )
        return True

    def _after_exit(self, sweep_id: str, rc: int | None, *, overtime: bool = False) -> None:
        """A driver is gone (rc None: adopted, or found gone at start-up): record the truth."""
        folder = self.folder(sweep_id)
        state = read_state(folder)
        self._record_mlflow(sweep_id, state)
        with self.sessions() as session:
            sweep = store.get_sweep(session, sweep_id=sweep_id)
        if sweep is None or sweep.terminal:
            return
        said = state.get("status")
        if overtime and said != "succeeded":
            error = (
                f"stopped after running for over {self.settings.max_sweep_s:g} s, the "
                "service's cap on a sweep's wall time (GOLDILOCKS_MAX_SWEEP_S); what it trained "
                "is in its folder and its MLflow runs"
            )
            self._close_stale_runs(sweep_id, "FAILED", error)
            self._finish(sweep_id, SweepStatus.failed, error)
        elif said == "succeeded" and rc in (0, None):
            self._finish(sweep_id, SweepStatus.succeeded)
        elif sweep.cancel_requested:
            self._end_cancelled(sweep_id)
        elif self.stopping:
            # Our own shutdown stopped it: no failure of the sweep's, so no resume attempt spent.
            with self.sessions() as session:
                store.refund_attempt(session, sweep_id=sweep_id)
            log.info("sweep %s: left running, to be resumed at the next start", sweep_id)
        elif said == "failed" or rc == EXIT_BAD_INPUT or (rc == EXIT_FAILED and said is None):
            # The driver said so (sweep.json), or refused its input, or failed before its sweep
            # started: deterministic, another attempt would fail the same way.
            error = state.get("error") if said == "failed" else None
            error = error or log_tail(folder / DRIVER_LOG) or f"driver exited with {rc}"
            self._close_stale_runs(sweep_id, "FAILED", error)
            self._finish(sweep_id, SweepStatus.failed, error)
        elif rc == 0:
            error = "the driver exited 0 but the sweep folder does not say succeeded"
            self._close_stale_runs(sweep_id, "FAILED", error)
            self._finish(sweep_id, SweepStatus.failed, error)
        else:  # interrupted, killed, crashed mid-sweep: the folder can carry on
            self._resume_or_fail(sweep, describe_stop(rc, said))

    def _resume_or_fail(self, sweep: store.Sweep, reason: str) -> None:
        folder = self.folder(sweep.id)
        attempts_left = 1 + self.settings.max_resume_attempts - sweep.attempts
        unresumable = None
        if sweep.parent_run_id and not (folder / MLFLOW_STATE).exists():
            # A new driver would create a second set of MLflow runs.
            unresumable = "its folder lost mlflow_state.json (MLflow runs unknown)"
        if attempts_left <= 0 or unresumable:
            why = unresumable or f"{sweep.attempts - 1} resume attempt(s) failed"
            error = f"driver stopped ({reason}); cannot resume: {why}"
            tail = log_tail(folder / DRIVER_LOG, lines=8)
            error += f"\nlast driver output:\n{tail}" if tail else ""
            self._close_stale_runs(sweep.id, "FAILED", error)
            self._finish(sweep.id, SweepStatus.failed, error)
            return
        log.warning("sweep %s: driver stopped (%s); resuming", sweep.id, reason)
        if sweep.id not in self._resume:
            self._resume.append(sweep.id)

    def _end_cancelled(self, sweep_id: str) -> None:
        self._close_stale_runs(sweep_id, "KILLED", "cancelled")
        self._finish(sweep_id, SweepStatus.cancelled, "cancelled by request")

    def _finish(self, sweep_id: str, status: SweepStatus, error: str | None = None) -> None:
        with self.sessions() as session:
            store.finish_sweep(session, sweep_id=sweep_id, status=status, error=error)
        log.info("sweep %s: %s%s", sweep_id, status, f" ({error})" if error else "")

    def _close_stale_runs(self, sweep_id: str, status: str, reason: str) -> None:
        """End the MLflow runs a driver left RUNNING (it was SIGKILLed, or died)."""
        folder = self.folder(sweep_id)
        state_path = folder / MLFLOW_STATE
        if not state_path.exists():
            return
        uri = (read_state(folder).get("mlflow") or {}).get("tracking_uri")
        try:
            uri = uri or TrackingState.read(state_path).tracking_uri
            from sweeps.tracking.stale import close_stale_runs  # imports MLflow: only when needed

            ended = close_stale_runs(
                uri or self.settings.mlflow_uri, state_path, status=status, reason=reason
            )
        except Exception as err:  # MLflow down: the sweep's own status still gets recorded
            log.error("sweep %s: could not close its MLflow runs: %s", sweep_id, err)
            return
        if ended:
            log.info("sweep %s: ended %d stale MLflow run(s) %s", sweep_id, ended, status)

    # ---- start-up and shutdown

    def recover(self) -> None:
        """Queued sweeps stay queued; each running one is adopted, resumed or ended."""
        with self.sessions() as session:
            running = list(store.sweeps_with_status(session, status=SweepStatus.running))
        for sweep in running:
            pid = sweep.pid or read_state(self.folder(sweep.id)).get("pid")
            if is_driver_alive(pid, sweep.id, self.folder(sweep.id)):
                # Its signal-on-death is already stopping it (or, without prctl, it runs on):
                # watch it like our own and decide when it exits, never beside it.
                log.info("sweep %s: watching driver %d of the previous service", sweep.id, pid)
                self._drivers[sweep.id] = Driver(sweep.id, self.folder(sweep.id), int(pid))
            else:
                self._after_exit(sweep.id, None)

    def _shutdown_drivers(self) -> None:
        drivers = list(self._drivers.values())
        for driver in drivers:
            driver.terminate()
        deadline = time.monotonic() + self.settings.cancel_grace_s
        while time.monotonic() < deadline and any(not d.exited()[0] for d in drivers):
            time.sleep(0.1)
        for driver in drivers:
            exited, rc = driver.exited()
            if not exited:
                driver.kill()
                if driver.proc is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        driver.proc.wait(5)
            driver.close_log()
            self._after_exit(driver.sweep_id, rc)
        self._drivers.clear()
