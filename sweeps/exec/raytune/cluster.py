"""Starting Ray: a local Ray or the cluster at RAY_ADDRESS, the environment trial workers get,
and the programs the driver compiles while Ray starts."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ray

from sweeps.core.compile_cache import persistent_cache_on
from sweeps.exec.precompile import CompileAhead
from sweeps.folder import PROGRAMS
from sweeps.spec import SweepSpec


@dataclass(frozen=True)
class RayTarget:
    """Where a sweep's Ray trials run and what they are told, decided once by the driver's
    entry point from its settings (nothing below reads the environment). The trials get what
    they need with their trial (`tune.with_parameters`), not through environment variables."""

    address: str | None = None  # the cluster to join; None: a local Ray of the sweep's own
    same_host: bool = False  # that cluster is this machine (the service's Ray, a kept head)
    jax_cpu_only: bool = True  # this driver's JAX has no accelerator plugin to grab a device
    compile_cache: Path | None = None  # the trials' persistent compile cache
    precompile: bool = True  # compile the trials' programs here while Ray starts
    checkpoint_every_s: float = 20.0  # a trial checkpoints at most this often
    cpu_threads: int | None = None  # slices a CPU trial trains at once (unset: its CPUs)
    trial_hook: str | None = None  # "file.py:fn" called fn(population_id, step) per eval point
    warm_trainer: bool = False  # one-trial-per-host sweeps: the Ray's warm trainer trains (warm.py)

    @classmethod
    def from_settings(cls, settings, address: str | None = None) -> RayTarget:
        from importlib.metadata import entry_points

        return cls(
            address=address or os.environ.get("RAY_ADDRESS") or None,
            same_host=settings.ray_same_host,
            jax_cpu_only=os.environ.get("JAX_PLATFORMS") == "cpu"
            or not entry_points(group="jax_plugins"),
            compile_cache=settings.compile_cache,
            precompile=settings.precompile,
            checkpoint_every_s=settings.checkpoint_every_s,
            cpu_threads=settings.cpu_threads,
            trial_hook=settings.trial_hook,
            warm_trainer=settings.warm_trainer,
        )


LOCAL = RayTarget()


def worker_env(spec: SweepSpec, target: RayTarget = LOCAL) -> dict[str, str]:
    """Environment for trial processes: threads sized to the trial, a shared compile cache."""
    threads = str(max(1, math.floor(spec.resources.cpus_per_trial)))
    env = {
        "OMP_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        # One XLA CPU thread pool per trial, sized to its CPUs: two trials on two cores
        # must not each spin up a pool as wide as the machine.
        "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen={'true' if threads != '1' else 'false'} "
        f"intra_op_parallelism_threads={threads}",
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    }
    if target.compile_cache is not None:
        env["JAX_COMPILATION_CACHE_DIR"] = str(compile_cache_dir(target.compile_cache))
    env.update(accelerator_env(spec))
    return env


def accelerator_env(spec: SweepSpec) -> dict[str, str]:
    """What makes a trial run on the device it was given, by construction.

    `JAX_PLATFORMS` names the platform, so a trial whose accelerator is missing fails
    instead of falling back to the CPU in silence (the trial checks the backend too). Trials
    that share a GPU (`gpus_per_trial` < 1) must not each preallocate 75 % of it: they
    allocate on demand. (Only XLA_PYTHON_CLIENT_PREALLOCATE is set: jaxlib 0.10 raises when
    its XLA_CLIENT_MEM_FRACTION and the deprecated XLA_PYTHON_CLIENT_MEM_FRACTION are both set.)
    """
    platform = spec.resources.accelerator
    env = {"JAX_PLATFORMS": platform}
    if platform == "cuda" and spec.resources.gpus_per_trial < 1:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    return env


def trial_resources(spec: SweepSpec) -> dict[str, float]:
    """One trial's Ray resources: CPUs, GPUs (fractions share one), TPU chips (whole)."""
    r = spec.resources
    resources: dict[str, float] = {"cpu": r.cpus_per_trial, "gpu": r.gpus_per_trial}
    if r.tpus_per_trial:
        resources["TPU"] = r.tpus_per_trial
    return resources


def compile_cache_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def compile_ahead(
    spec: SweepSpec,
    data,
    populations: list,
    folder: Path,
    target: RayTarget = LOCAL,
    widths: dict[str, int] | None = None,
) -> CompileAhead | None:
    """Start compiling the trials' programs in this process while Ray starts, where the trials
    can use them: a local Ray (this machine) with CPU trials, and a CPU-only JAX here (an
    accelerator plugin would have this driver grab the device). See sweeps/exec/precompile.py.

    Not on a Ray that is already up (a kept head, the service's Ray, this process's own from
    an earlier sweep): there is no start to hide the compile behind, and the warm trainer
    holds the programs already or the trials read them from the persistent cache (demo on a
    kept head: the driver's cold compile, 5.5 s, was on the critical path; the trials' own
    from the cache take 0.3 s a population).

    Nor where the warm trainer will train (a one-trial-per-host sweep): it compiles in its own
    process while Tune sets up the trial, or loads its programs from the persistent compile
    cache (the driver compiles without it: cold, every command), and a driver tracing and
    compiling beside `ray.init` slowed Ray's start from 2.3 s to 5.1 s on 2 cores
    (docs/benchmarks.md)."""
    if (
        not target.precompile
        or target.address is not None
        or ray.is_initialized()
        or (target.warm_trainer and one_trial_per_host(spec, populations, target))
        or not trials_run_here(spec, target)
        or not populations  # tpe: points come from the searcher as it runs
        or persistent_cache_on()  # its executables would reach the trials without their code
    ):
        return None
    threads = ray_trial_threads(spec, populations, target)
    return CompileAhead(spec, data, populations, folder / PROGRAMS, threads, widths)


def one_trial_per_host(spec: SweepSpec, populations: list, target: RayTarget = LOCAL) -> bool:
    """Train every population of a fixed plan in ONE Ray trial, one after another, each on all
    the CPUs the sweep may use (its slices side by side), where the sweep fits this host: CPU
    trials on this machine, no ASHA (it compares trials). Several one-CPU trials at once
    trained 3x slower than the same populations inline (a lone last trial left a core idle,
    each trial paid its own worker start); one trial on every core trains as inline does.
    Retries and resume still work per population (the checkpoint names the one in progress);
    a cluster, a tpe search and ASHA keep one trial per population."""
    return (
        bool(populations)
        and spec.scheduler.name == "none"
        and spec.resources.accelerator == "cpu"
        and trials_run_here(spec, target)
    )


def ray_trial_threads(spec: SweepSpec, populations: list, target: RayTarget = LOCAL) -> int:
    """Slices a Ray trial of this sweep trains at once (what the driver measures and compiles
    for): all the sweep's CPUs for one trial per host, else as `trial_threads` says."""
    from sweeps.exec.trial import trial_threads

    if one_trial_per_host(spec, populations, target):
        return trial_threads(spec, 1, target.cpu_threads)
    return trial_threads(spec, len(populations) or None, target.cpu_threads)


def bundle_resources(spec: SweepSpec) -> dict[str, float]:
    """The one trial per host asks for the CPUs of every trial slot, as far as Ray has them."""
    r = spec.resources
    total = ray.cluster_resources().get("CPU", r.cpus_per_trial) if ray.is_initialized() else 0
    cpus = r.cpus_per_trial * r.max_concurrent_trials
    return {"cpu": max(r.cpus_per_trial, min(cpus, total or cpus)), "gpu": 0}


def trials_run_here(spec: SweepSpec, target: RayTarget = LOCAL) -> bool:
    """The trials run on this machine's CPU, and this driver may use JAX on its CPU without
    taking a device: a local Ray (or one on this machine: the service's, a kept head), CPU
    trials, a CPU-only JAX here (an accelerator plugin would have this driver grab the
    device). Then what the driver compiles or measures holds for the trials."""
    return (
        (not target.address or target.same_host)
        and spec.resources.accelerator == "cpu"
        and target.jax_cpu_only
    )


REACH_TIMEOUT_S = 10.0


def check_reachable(address: str, timeout: float = REACH_TIMEOUT_S) -> None:
    """Fail in seconds, naming the address, when nothing listens there: ray.init would retry a
    dead cluster's GCS for minutes."""
    import socket
    from urllib.parse import urlsplit

    if address in ("auto", "local") or address.startswith("ray://"):
        return  # found by Ray itself, or a Ray Client server (its own timeouts)
    parsed = urlsplit(f"//{address}")
    host, port = parsed.hostname, parsed.port
    if not host or not port:
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=2.0):
                return
        except OSError as err:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"cannot reach the Ray cluster at {address} (RAY_ADDRESS): {err}"
                ) from None
            time.sleep(0.5)


def init_ray(spec: SweepSpec, target: RayTarget = LOCAL) -> str:
    """Join `target.address` when given, else start a local Ray with this machine's cores."""

    address = target.address
    if ray.is_initialized():
        return "existing"
    runtime_env = {"env_vars": worker_env(spec, target)}
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    quiet_ray_notices()
    with keeping_sigterm_handler(), _quiet_fork_warning():
        if address:
            check_reachable(address)
            # configure_logging=False: no "Connecting to existing Ray cluster" lines for users
            ray.init(
                address=address,
                runtime_env=runtime_env,
                log_to_driver=False,
                configure_logging=False,
            )
            return address
        ray.init(
            address="local",  # a new local Ray, even when another cluster runs on this machine
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            runtime_env=runtime_env,
            log_to_driver=False,
            configure_logging=False,
            # Ray starts one idle worker per CPU for the first driver. Tune never places a
            # trial in one (a trial actor has its own runtime env, so Ray starts a fresh
            # worker), so they only took CPU from the trial workers' start (~1 s each).
            _system_config={"prestart_worker_first_driver": False},
        )
    return "local"


LEAVE_CLUSTER_S, LEAVE_LOCAL_S = 10.0, 30.0


def leave_ray(exit_code: int, address: str | None = None) -> None:
    """Disconnect from Ray at the end of a command, in bounded time, then carry on exiting.

    With its head gone (killed after the sweep was recorded), `ray.shutdown` waits for the
    GCS, and after 60 s Ray ends the process with exit 1: a sweep that succeeded, and says
    so, whose command failed (the service would take it for a crash). Everything is written
    by now, so past a timeout (`LEAVE_CLUSTER_S`; `LEAVE_LOCAL_S` for a local Ray, which this
    process stops itself) the process exits with `exit_code` without Ray."""
    if not ray.is_initialized():
        return
    timeout = LEAVE_CLUSTER_S if address else LEAVE_LOCAL_S

    def give_up() -> None:
        import logging
        import sys

        logging.getLogger(__name__).warning(
            "Ray did not shut down in %.0f s (its head is gone?): leaving without it", timeout
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code)

    timer = threading.Timer(timeout, give_up)
    timer.daemon = True
    timer.start()
    try:
        if not address:
            _stop_autoscaler_monitor()
        ray.shutdown()
    finally:
        timer.cancel()


AUTOSCALER_MONITOR = "autoscaler/_private/monitor.py"


def _stop_autoscaler_monitor() -> int:
    """End the local Ray's autoscaler monitor at once. `ray.shutdown` stops Ray's processes one
    after another, each given a second to leave on SIGTERM, and the monitor (nothing to scale
    on one machine) never leaves in that second: a second at the end of every command."""
    import psutil

    stopped = 0
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if AUTOSCALER_MONITOR in " ".join(child.cmdline()):
                child.kill()
                stopped += 1
    return stopped


RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


class _NoAuthNotice(logging.Filter):
    """Ray 2.60's `ray.init` logs "Token authentication is enabled (disabled) for this Ray
    cluster ..." on every start (authentication_token_setup.py). Our local Ray's token is
    Ray's own (~/.ray/auth_token) and the service's is set by the service: nothing for a
    user to act on, so it is dropped; the module's other records (errors) still pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Token authentication is ")


def quiet_ray_notices() -> None:
    """Filter Ray's token-authentication notice out of this process's logs (idempotent)."""
    logger = logging.getLogger(RAY_AUTH_LOGGER)
    if not any(isinstance(f, _NoAuthNotice) for f in logger.filters):
        logger.addFilter(_NoAuthNotice())


@contextlib.contextmanager
def _quiet_fork_warning() -> Iterator[None]:
    """JAX warns on every fork once it runs threads, and it may be compiling ahead while Ray
    starts. Ray starts its processes with fork+exec (subprocess): no JAX code runs in a
    child, so the warning (meant for fork without exec) would only alarm the user."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"os\.fork\(\) was called", RuntimeWarning)
        yield


@contextlib.contextmanager
def keeping_sigterm_handler() -> Iterator[None]:
    """`ray.init` installs `sys.exit(15)` as the SIGTERM handler; keep the caller's instead.

    Ray's handler would turn a cancel that lands outside `Tuner.fit` (while Ray starts, or
    while the report is written) into exit code 15 and a sweep recorded as failed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def sigterm_stops_tune() -> Iterator[None]:
    """While inside, SIGTERM stops the sweep the way Ctrl-C does: Tune saves its state and
    returns. The caller's handler is back afterwards."""
    with keeping_sigterm_handler():
        if threading.current_thread() is threading.main_thread():

            def handler(signum, frame):
                os.kill(os.getpid(), signal.SIGUSR1)  # Tune's graceful-stop signal

            signal.signal(signal.SIGTERM, handler)
        yield


class HeadWatchdog:
    """Watches the joined cluster's head (its GCS) from a thread. Ray ends a driver whose GCS
    is gone for 60 s from C++, with no Python clean-up: the sweep folder would say `running`
    for ever and every MLflow run stay RUNNING. When the head stays unreachable for
    `grace_s`, `on_lost(reason)` records a true ending first (it may end the process)."""

    def __init__(self, on_lost, grace_s: float = 20.0, every_s: float = 2.0):
        self.on_lost, self.grace_s, self.every_s = on_lost, grace_s, every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> HeadWatchdog:
        try:
            address = ray.get_runtime_context().gcs_address
        except Exception:  # no Ray here: nothing to watch
            return self
        host, _, port = address.rpartition(":")
        self._thread = threading.Thread(
            target=self._watch, args=(host, int(port), address), name="ray-head-watchdog",
            daemon=True,
        )  # fmt: skip
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _watch(self, host: str, port: int, address: str) -> None:
        import socket

        last_ok = time.monotonic()
        while not self._stop.wait(self.every_s):
            try:
                with socket.create_connection((host, port), timeout=2.0):
                    last_ok = time.monotonic()
                    continue
            except OSError:
                pass
            if time.monotonic() - last_ok > self.grace_s and not self._stop.is_set():
                self.on_lost(
                    f"lost the Ray cluster: its head (GCS at {address}) has not answered for "
                    f"{self.grace_s:g} s; resume the sweep with `goldilocks resume` once Ray is back"
                )
                return
