"""The Ray Tune executor: each Ray Tune trial trains one population.

The only module that imports Ray. The driver (this process) plans populations, hands each
to a trial (`tune.grid_search` over population indices; `tpe` samples points with Optuna and
trains each point over all seeds), and collects every trial's eval points through a Tune
callback: per-lane histories, progress, and the MLflow hook all stay on the driver, so
workers need no MLflow access.

Trials checkpoint their population state at eval points (at most every
`checkpoint_every_s`), so a retried trial (`FailureConfig.max_failures`) resumes rather than
restarts, and `goldilocks resume` restores an interrupted sweep with `Tuner.restore`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import pickle
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray import tune
from ray.tune.logger import JsonLoggerCallback

from sweeps.data import Dataset
from sweeps.errors import SweepFailed, SweepInterrupted
from sweeps.inline import Execution, PointCallback, new_progress
from sweeps.losses import get_loss
from sweeps.plan import Lane, Population
from sweeps.population import Timing
from sweeps.precompile import CompileAhead, ProgramsFile, install_programs
from sweeps.progress import ProgressCallback
from sweeps.results import LaneRecorder, LaneResult
from sweeps.spec import SweepSpec

log = logging.getLogger(__name__)

CHECKPOINT_EVERY_S = float(os.environ.get("GOLDILOCKS_CHECKPOINT_EVERY_S", "20"))
BAD_SCORE = 1e30  # a trial whose lanes all diverged: a number, never NaN, for ASHA and TPE


# --------------------------------------------------------------------------- Ray itself
WORKER_KNOBS = {
    "GOLDILOCKS_CHECKPOINT_EVERY_S",
    "GOLDILOCKS_COMPILE_CACHE",
    "GOLDILOCKS_CPU_LANE_WIDTH",
    "GOLDILOCKS_GPU_LANE_WIDTH",
    "GOLDILOCKS_MAX_LANES",
}


def worker_env(spec: SweepSpec) -> dict[str, str]:
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
        "JAX_COMPILATION_CACHE_DIR": str(compile_cache_dir()),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    }
    if spec.resources.gpus_per_trial == 0:
        env["JAX_PLATFORMS"] = "cpu"
    # Trainer knobs (and test fault injection) travel to the workers; secrets such as the
    # API token or the database URL must not end up in Ray's cluster state.
    env.update(
        {
            k: v
            for k, v in os.environ.items()
            if k in WORKER_KNOBS or k.startswith("GOLDILOCKS_TEST_")
        }
    )
    return env


def compile_cache_dir() -> Path:
    path = Path(
        os.environ.get("GOLDILOCKS_COMPILE_CACHE", Path.home() / ".cache" / "goldilocks" / "jax")
    )
    path.mkdir(parents=True, exist_ok=True)
    return path


def compile_ahead(prepared, folder: Path, address: str | None = None) -> CompileAhead | None:
    """Start compiling the trials' programs in this process while Ray starts, where the trials
    can use them: a local Ray (this machine) with CPU trials, and a CPU-only JAX here (an
    accelerator plugin would have this driver grab the device). See sweeps/precompile.py."""
    from importlib.metadata import entry_points

    from sweeps.settings import get_settings

    spec = prepared.spec
    if (
        not get_settings().precompile
        or _cluster_address(address)
        or spec.resources.gpus_per_trial
        or not prepared.populations  # tpe: points come from the searcher as it runs
        or (os.environ.get("JAX_PLATFORMS") != "cpu" and entry_points(group="jax_plugins"))
    ):
        return None
    return CompileAhead(spec, prepared.data, prepared.populations, folder / "programs.pkl")


def _cluster_address(address: str | None) -> str | None:
    """The Ray cluster to join: `address`, else RAY_ADDRESS; None means a local Ray."""
    return address or os.environ.get("RAY_ADDRESS") or None


def init_ray(spec: SweepSpec, address: str | None = None) -> str:
    """Join RAY_ADDRESS (or `address`) when given, else start a local Ray with this machine's cores."""

    address = _cluster_address(address)
    if ray.is_initialized():
        return "existing"
    runtime_env = {"env_vars": worker_env(spec)}
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    with _keeping_sigterm_handler(), _quiet_fork_warning():
        if address:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
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


@contextlib.contextmanager
def _quiet_fork_warning() -> Iterator[None]:
    """JAX warns on every fork once it runs threads, and it may be compiling ahead while Ray
    starts. Ray starts its processes with fork+exec (subprocess): no JAX code runs in a
    child, so the warning (meant for fork without exec) would only alarm the user."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"os\.fork\(\) was called", RuntimeWarning)
        yield


@contextlib.contextmanager
def _keeping_sigterm_handler() -> Iterator[None]:
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


# --------------------------------------------------------------------------- the trainable
def _population_for(
    config: dict, populations: list[Population], spec: SweepSpec, trial_id: str
) -> Population:
    if "population" in config:
        return populations[config["population"]]
    # tpe: the searcher proposed one point; train it over every seed. Lane indices are local
    # here; the driver numbers the lanes of each new point as its first result arrives.
    from sweeps.optimizers import OPTIMIZERS
    from sweeps.schedules import SCHEDULES

    opt, sched = config["optimizer"], config["schedule"]
    opt_args = {**OPTIMIZERS[opt].defaults}
    opt_args.update(
        {k[4:]: v for k, v in config.items() if k[4:] in opt_args and k.startswith("opt.")}
    )
    sched_args = {**SCHEDULES[sched].defaults}
    sched_args.update(
        {k[6:]: v for k, v in config.items() if k[6:] in sched_args and k.startswith("sched.")}
    )
    lr = OPTIMIZERS[opt].default_lr if OPTIMIZERS[opt].lr_free else float(config["learning_rate"])
    lanes = tuple(
        Lane(i, opt, sched, lr, seed, opt_args, sched_args)
        for i, seed in enumerate(spec.train.seeds)
    )
    return Population(f"tpe-{trial_id}-{opt}-{sched}", opt, sched, lanes)


def _maybe_crash(step: int) -> None:
    """Fault injection for tests: kill this worker once when it reaches a given step."""
    at = os.environ.get("GOLDILOCKS_TEST_CRASH_AT_STEP")
    marker = os.environ.get("GOLDILOCKS_TEST_CRASH_MARKER")
    if at and marker and step >= int(at) and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os._exit(3)  # like a killed worker: no exception, no cleanup


def population_trainable(
    config: dict,
    *,
    spec_json: str,
    populations: list[Population],
    data: Dataset,
    programs: ProgramsFile | None = None,
) -> None:
    """One Tune trial: train one population, report every eval point, checkpoint as it goes."""
    import jax

    from sweeps.spec import SweepSpec
    from sweeps.trial import run_trial

    spec = SweepSpec.model_validate_json(spec_json)
    pop = _population_for(config, populations, spec, tune.get_context().get_trial_id())
    install_programs(programs, data)  # compiled by the driver while Ray started, if it could
    timing = Timing()
    start, start_step = None, 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            saved = pickle.loads((Path(folder) / "state.pkl").read_bytes())
        start, start_step = saved["state"], saved["step"]
    last_save = time.monotonic()
    node_id = ray.get_runtime_context().get_node_id()  # where it ran: shown, and tested
    for point in run_trial(spec, pop, data, timing=timing, start=start, start_step=start_step):
        metrics = {
            **_metrics(pop, point, tpe="population" not in config),
            "node_id": node_id,
            "compiles": timing.compiles,  # programs this trial had to compile itself
            "compile_s": timing.compile_s,
        }
        save = point.step == spec.train.steps or time.monotonic() - last_save > CHECKPOINT_EVERY_S
        if save and point.step > start_step:
            with tempfile.TemporaryDirectory() as folder:
                state = jax.tree.map(np.asarray, point.state)
                blob = pickle.dumps({"state": state, "step": point.step})
                (Path(folder) / "state.pkl").write_bytes(blob)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
            last_save = time.monotonic()
        else:
            tune.report(metrics)
        _maybe_crash(point.step)


def _metrics(pop: Population, point, *, tpe: bool) -> dict[str, Any]:
    finite = point.val_loss[np.isfinite(point.val_loss)]
    # ASHA and TPE compare trials by their best lane (TPE: by the mean over its seeds).
    score = float(finite.min()) if finite.size else BAD_SCORE
    if tpe:
        score = float(np.mean(point.val_loss)) if finite.size == len(point.val_loss) else BAD_SCORE
    out = {
        "population_id": pop.id,
        "lane_indices": [lane.index for lane in pop.lanes],
        "eval_step": point.step,
        "score": score,
        "train_loss": point.train_loss.tolist(),
        "val_loss": point.val_loss.tolist(),
        "val_metrics": {k: v.tolist() for k, v in point.val_metrics.items()},
        "learning_rate": point.learning_rate.tolist(),
        "diverged_at": point.diverged_at.tolist(),
        "spiked": point.spiked.tolist(),
        "init_loss": None if point.init_loss is None else point.init_loss.tolist(),
    }
    if tpe:  # tpe points describe their lanes: the driver did not plan them
        out["lanes"] = [_lane_json(lane) for lane in pop.lanes]
    return out


def _lane_json(lane: Lane) -> dict:
    return {
        "index": lane.index,
        "optimizer": lane.optimizer,
        "schedule": lane.schedule,
        "learning_rate": lane.learning_rate,
        "seed": lane.seed,
        "optimizer_args": lane.optimizer_args,
        "schedule_args": lane.schedule_args,
    }


def _lane_from_json(d: dict) -> Lane:
    return Lane(
        d["index"], d["optimizer"], d["schedule"], d["learning_rate"], d["seed"],
        d["optimizer_args"], d["schedule_args"],
    )  # fmt: skip


# --------------------------------------------------------------------------- the driver
class PointLog:
    """Every eval point the driver received, appended to `points.jsonl` in the sweep folder,
    so `resume` rebuilds lane histories of trials that had already finished."""

    def __init__(self, path: Path):
        self.path = path

    def append(self, metrics: dict) -> None:
        self._write(_point_fields(metrics))

    def trial_ended(self, trial_id: str) -> None:
        """Finished trials are not run again by `Tuner.restore`: remember them here."""
        self._write({"trial_ended": trial_id})

    def _write(self, row: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        rows = []
        for line in self.path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a torn last line from a killed driver
                continue
        return rows


_POINT_KEYS = (
    "population_id", "lane_indices", "eval_step", "train_loss", "val_loss", "val_metrics",
    "learning_rate", "diverged_at", "spiked", "init_loss", "lanes", "node_id", "compiles",
    "compile_s",
)  # fmt: skip


def _point_fields(metrics: dict) -> dict:
    return {k: metrics[k] for k in _POINT_KEYS if k in metrics}


class Collector:
    """Driver-side sink for trial results: lane histories, progress, and the point hook."""

    def __init__(
        self,
        spec: SweepSpec,
        lanes: list[Lane],
        populations: list[Population],
        point_log: PointLog,
        on_point: PointCallback | None,
        on_progress: ProgressCallback | None,
        on_new_lanes: Callable[[list[Lane], str], None] | None = None,
    ):
        self.spec = spec
        self.on_new_lanes = on_new_lanes
        self.metric = get_loss(spec.loss).metric
        self.lanes = {lane.index: lane for lane in lanes}
        self.recorders: dict[str, LaneRecorder] = {
            p.id: LaneRecorder(p.lanes, p.id, self.metric) for p in populations
        }
        self.point_log = point_log
        self.on_point = on_point
        self.on_progress = on_progress
        self.progress = new_progress(spec, populations)
        self.finished: set[str] = set()
        self.errors: dict[str, str] = {}
        self.running: set[str] = set()
        self.compile_s: dict[str, float] = {}  # per population, as its trial last reported

    def recorder_for(self, metrics: dict) -> LaneRecorder:
        pid = metrics["population_id"]
        if pid not in self.recorders:  # a tpe point: its lanes come with the result
            base = len(self.lanes)
            lanes = [
                _lane_from_json({**d, "index": base + i}) for i, d in enumerate(metrics["lanes"])
            ]
            if self.on_new_lanes:
                self.on_new_lanes(lanes, pid)
            for lane in lanes:
                self.lanes[lane.index] = lane
            self.recorders[pid] = LaneRecorder(lanes, pid, self.metric)
            self.progress.lanes_total = len(self.lanes)
        return self.recorders[pid]

    def add(self, metrics: dict, *, replay: bool = False) -> None:
        recorder = self.recorder_for(metrics)
        recorder.record(
            metrics["eval_step"],
            np.asarray(metrics["train_loss"], float),
            np.asarray(metrics["val_loss"], float),
            {k: np.asarray(v, float) for k, v in metrics["val_metrics"].items()},
            np.asarray(metrics["learning_rate"], float),
            np.asarray(metrics["diverged_at"]),
            np.asarray(metrics["spiked"]),
            None if metrics.get("init_loss") is None else np.asarray(metrics["init_loss"], float),
        )
        self.compile_s[metrics["population_id"]] = metrics.get("compile_s", 0.0)
        if not replay:
            self.point_log.append(metrics)
        if self.on_point:
            self.on_point(recorder.results[0].trial_id, recorder.results, metrics["eval_step"])
        self._update_progress()

    def _update_progress(self) -> None:
        done = sum(
            r.step[-1] if r.step else 0 for rec in self.recorders.values() for r in rec.results
        )
        self.progress.lane_steps_done = done
        self.progress.trials_done = len(self.finished)
        self.progress.trials_running = len(self.running - self.finished)
        if self.spec.search.method == "tpe":
            self.progress.lane_steps_total = (
                self.spec.search.num_samples * len(self.spec.train.seeds) * self.spec.train.steps
            )
        if self.on_progress:
            self.on_progress(self.progress)

    def results(self) -> list[LaneResult]:
        out = [r for rec in self.recorders.values() for r in rec.results if r.step]
        return sorted(out, key=lambda r: r.lane.index)


# Tune pickles the RunConfig (callbacks included) with its experiment state and restores it
# as it was, so the callback holds only a key; the live collector is looked up here.
_COLLECTORS: dict[str, Collector] = {}


class _Callback(tune.Callback):
    """Feeds trial results to the sweep's collector, found by key (see _COLLECTORS)."""

    def __init__(self, key: str):
        self.key = key

    @property
    def collector(self) -> Collector:
        return _COLLECTORS[self.key]

    def on_trial_start(self, iteration, trials, trial, **info):
        self.collector.running.add(trial.trial_id)
        self.collector._update_progress()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.collector.add(result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.collector.errors[trial.trial_id] = _error_text(trial)
        self._ended(trial)

    def _ended(self, trial) -> None:
        if trial.trial_id not in self.collector.errors:
            self.collector.point_log.trial_ended(trial.trial_id)
        self.collector.finished.add(trial.trial_id)
        self.collector.running.discard(trial.trial_id)
        self.collector._update_progress()


def _error_text(trial) -> str:
    """The last line of the trial's error file: the exception, without Ray's framing."""
    path = getattr(trial, "error_file", None)
    try:
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
        return f"{trial}: {lines[-1]}" if lines else f"{trial}: failed"
    except (OSError, TypeError):
        return f"{trial}: failed"


def _param_space(spec: SweepSpec, populations: list[Population], n_lanes: int) -> dict:

    if spec.search.method != "tpe":
        return {"population": tune.grid_search(list(range(len(populations))))}
    s = spec.search
    r = s.learning_rate
    space: dict[str, Any] = {
        "learning_rate": tune.loguniform(r.min, r.max)
        if r.scale == "log"
        else tune.uniform(r.min, r.max),
        "optimizer": tune.choice(s.optimizer),
        "schedule": tune.choice(s.schedule),
    }
    for k, v in s.optimizer_args.items():
        space[f"opt.{k}"] = tune.choice(v) if isinstance(v, list) else v
    for k, v in s.schedule_args.items():
        space[f"sched.{k}"] = tune.choice(v) if isinstance(v, list) else v
    return space


def run_ray(
    spec: SweepSpec,
    data: Dataset,
    lanes: list[Lane],
    populations: list[Population],
    sweep_dir: Path,
    *,
    on_point: PointCallback | None = None,
    on_progress: ProgressCallback | None = None,
    on_new_lanes: Callable[[list[Lane], str], None] | None = None,
    address: str | None = None,
    resume: bool = False,
    ahead: CompileAhead | None = None,
) -> Execution:
    """Run (or resume) the sweep's populations as Ray Tune trials; return lane results.

    `ahead`: programs being compiled here while Ray started (`compile_ahead`); the trials
    get what is ready when they are created."""
    # Our collector is the record; of Tune's own loggers only the JSON one stays (the result
    # grid reads it back); TensorBoardX would complain about every NaN of a diverged lane.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # Tune's new console output prints its tables even at verbose=0; our CLI draws its own.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

    init_ray(spec, address)
    storage = (sweep_dir / "ray").resolve()
    experiment = storage / "tune"
    point_log = PointLog(sweep_dir / "points.jsonl")
    collector = Collector(spec, lanes, populations, point_log, on_point, on_progress, on_new_lanes)
    if resume:
        for row in point_log.read():
            if "trial_ended" in row:
                collector.finished.add(row["trial_ended"])
            else:
                collector.add(row, replay=True)

    trainable = tune.with_parameters(
        population_trainable,
        spec_json=spec.model_dump_json(),
        populations=populations,
        data=data,
        programs=ahead.take() if ahead else None,
    )
    resources = {"cpu": spec.resources.cpus_per_trial, "gpu": spec.resources.gpus_per_trial}
    trainable = tune.with_resources(trainable, resources)
    run_config = tune.RunConfig(
        name="tune",
        storage_path=str(storage),
        failure_config=tune.FailureConfig(max_failures=spec.resources.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=[_Callback(str(experiment)), JsonLoggerCallback()],
        verbose=0,
    )
    _COLLECTORS[str(experiment)] = collector
    t0 = time.perf_counter()
    try:
        with _sigterm_stops_tune():
            if resume and tune.Tuner.can_restore(str(experiment)):
                tuner = tune.Tuner.restore(
                    str(experiment), trainable, resume_unfinished=True, resume_errored=True
                )
            else:
                tuner = tune.Tuner(
                    trainable,
                    param_space=_param_space(spec, populations, len(lanes)),
                    tune_config=_tune_config(spec, populations, len(lanes)),
                    run_config=run_config,
                )
            tuner.fit()  # its ResultGrid would re-read logs we do not write: the collector knows
    finally:
        _COLLECTORS.pop(str(experiment), None)
        programs = ahead.close() if ahead else None
    wall = time.perf_counter() - t0

    expected = spec.search.num_samples if spec.search.method == "tpe" else len(populations)
    if collector.errors:
        first = next(iter(collector.errors.values()))
        raise SweepFailed(f"{len(collector.errors)} trial(s) failed after retries: {first}")
    if len(collector.finished) < expected:
        raise SweepInterrupted(
            f"{expected - len(collector.finished)} of {expected} trials did not finish; "
            "resume with `goldilocks resume`"
        )
    # Compile time: the driver's, while Ray started, plus whatever the trials compiled.
    compile_s = (programs.compile_s if programs else 0.0) + sum(collector.compile_s.values())
    return Execution(collector.results(), Timing(compile_s=compile_s, train_s=wall))


def _tune_config(spec: SweepSpec, populations: list[Population], n_lanes: int):

    scheduler = None
    if spec.scheduler.name == "asha":
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=-(-spec.train.steps // spec.train.eval_every) + 1,
            grace_period=spec.scheduler.grace_period,
            reduction_factor=spec.scheduler.reduction_factor,
        )
    search_alg = None
    num_samples = 1
    if spec.search.method == "tpe":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        search_alg = ConcurrencyLimiter(
            OptunaSearch(seed=spec.search.seed),
            max_concurrent=spec.resources.max_concurrent_trials,
        )
        num_samples = spec.search.num_samples
    return tune.TuneConfig(
        metric="score",
        mode="min",
        scheduler=scheduler,
        search_alg=search_alg,
        num_samples=num_samples,
        max_concurrent_trials=spec.resources.max_concurrent_trials,
        # A trial process keeps JAX imported and its compiled programs for the next trial.
        reuse_actors=True,
        trial_name_creator=lambda t: _trial_name(t, populations),
        trial_dirname_creator=lambda t: _trial_name(t, populations),
    )


def _trial_name(trial, populations: list[Population]) -> str:
    cfg = trial.config
    if "population" in cfg:
        return populations[cfg["population"]].id
    return f"tpe-{trial.trial_id}"


@contextlib.contextmanager
def _sigterm_stops_tune() -> Iterator[None]:
    """While inside, SIGTERM stops the sweep the way Ctrl-C does: Tune saves its state and
    returns. The caller's handler is back afterwards."""
    with _keeping_sigterm_handler():
        if threading.current_thread() is threading.main_thread():

            def handler(signum, frame):
                os.kill(os.getpid(), signal.SIGUSR1)  # Tune's graceful-stop signal

            signal.signal(signal.SIGTERM, handler)
        yield
