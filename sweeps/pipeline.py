"""`goldilocks run` and `resume` as library functions: the sweep pipeline, one way.

    spec -> prepare (data, planner) -> executor (inline | Ray Tune) -> point stream
         -> dispatcher -> (lane recorders, MLflow tracker, progress)
         -> tracker flushed, run ids assigned -> verdict -> report.json + plots (once)
         -> the parent MLflow run gets the final report and plots

Everything lands in one sweep folder (sweeps/folder.py names its files).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sweeps import folder as files
from sweeps.errors import FolderError, SpecError, SweepInterrupted
from sweeps.folder import SweepFolder
from sweeps.preparation import Prepared, load_sweep_data, prepare, resolve_imports
from sweeps.settings import Settings, get_settings
from sweeps.spec import SweepSpec, parse_spec
from sweeps.stream import Dispatcher, Progress, ProgressCallback, progress_writer
from sweeps.verdict.analysis import analyze_for
from sweeps.verdict.report import (
    build_report,
    json_safe,
    lane_steps,
    lane_steps_dense,
    write_report,
)
from sweeps.verdict.words import verdict_markdown

EXECUTORS = ("ray", "inline")
__all__ = ["EXECUTORS", "Prepared", "load_for_resume", "load_sweep_data", "new_sweep_id",
           "prepare", "resolve_imports", "run_sweep"]  # fmt: skip

log = logging.getLogger(__name__)


def new_sweep_id(spec: SweepSpec) -> str:
    return f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def run_sweep(
    prepared: Prepared,
    out_dir: Path,
    *,
    executor: str = "ray",
    sweep_id: str | None = None,
    on_progress: ProgressCallback | None = None,
    ray_address: str | None = None,
    tracking_uri: str | None = None,
    track: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Run (or resume) a prepared sweep; write report.json and plots into `out_dir`.

    `out_dir` must be new, empty or this sweep's own (`resume`); a folder of another sweep is
    refused (SpecError naming `out`) unless `overwrite`, which clears its files and starts new
    MLflow runs, never touching the old ones.

    Raises `SweepInterrupted` (Ctrl-C/SIGTERM; resumable) or `SweepFailed`; either way every
    MLflow run is closed with a true status and the sweep folder says what happened.

    A library entry point: `settings` are read here when not given (GOLDILOCKS_*) and passed
    down as arguments (the lane-width policy, where Ray runs and what its trials are told).
    """
    settings = settings or get_settings()
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor '{executor}'; choose one of: {', '.join(EXECUTORS)}")
    if prepared.ran:  # its planner has nothing left: it would train nothing and "succeed"
        raise ValueError("this prepared sweep has run already: prepare the spec again")
    prepared.ran = True
    spec, planner = prepared.spec, prepared.planner
    folder = SweepFolder(out_dir)
    spec_json = spec.model_dump_json(indent=1)
    if not resume:
        folder.claim(spec_json, sweep_id, overwrite=overwrite)  # before anything is written
    folder.path.mkdir(parents=True, exist_ok=True)
    if resume:
        sweep_id = folder.state()["sweep_id"]
    sweep_id = sweep_id or new_sweep_id(spec)
    (folder / files.SPEC).write_text(spec_json)
    # The folder says "running" before anything can fail, so every ending below is recorded.
    folder.set_state(
        sweep_id=sweep_id,
        name=spec.name,
        executor=executor,
        status="running",
        error=None,
        spec_hash=files.spec_fingerprint(spec_json),
        base_dir=str(prepared.base_dir) if prepared.base_dir else None,
        pid=os.getpid(),
    )
    t0 = time.perf_counter()
    opening = dispatcher = None
    try:
        planner.persist(folder / files.PLAN, resume=resume)
        progress = progress_writer(folder.write_progress, on_progress)
        target = _ray_target(executor, settings, ray_address)
        widths = _decide_widths(prepared, target, settings, progress)
        progress(Progress(stage="starting"))  # MLflow, Ray, the compiles ahead
        # MLflow opens (seconds of imports and store set-up) while Ray starts and the trials
        # train: the tracker is told every lane and point so far once it is open.
        opening = _open_tracker(prepared.spec, folder, sweep_id, tracking_uri) if track else None
        ahead = _start_ray(prepared, folder, target, widths) if executor == "ray" else None
        dispatcher = Dispatcher(
            metric=spec.metric_name,
            steps=spec.train.steps,
            expected_trials=planner.expected_trials,
            expected_lanes=planner.expected_lanes,
            on_progress=progress,
        )
        if opening:
            dispatcher.attach_when_open(opening, lambda t: folder.set_state(mlflow=t.info))
        planner.subscribe(dispatcher.add_population)
        planner.follow(
            dispatcher, analyze_for
        )  # refinement rounds are planned from the lanes' results
        runner = _executor(prepared, folder, executor, target, ahead, widths)
        watchdog = _watch_ray_head(folder, opening) if executor == "ray" else None
        try:
            timing = runner.run(planner, dispatcher, resume=resume)
        finally:
            if watchdog:
                watchdog.stop()
        tracker = None
        if opening:
            dispatcher.attach_opened(wait=True)
            tracker = opening.result()
        timing.tune_s += widths.tune_s
        report = _finish(
            prepared, folder, sweep_id, executor, dispatcher, timing, tracker, t0, widths
        )
    except (SweepInterrupted, KeyboardInterrupt) as err:
        reason = ending_reason(err)
        if opening:  # waits for a tracker still opening: its parent run must not stay RUNNING
            _close_opened(opening, err, dispatcher)
        _record_ending(folder, "interrupted", reason)
        raise SweepInterrupted(reason) from None
    except BaseException as err:
        reason = ending_reason(err)
        if opening:  # MLflow itself may be what failed; the sweep folder still tells the truth
            _close_opened(opening, err, dispatcher)
        _record_ending(folder, "failed", reason)
        raise
    folder.set_state(status="succeeded", error=None)
    return report


def _ray_target(executor: str, settings: Settings, ray_address: str | None):
    """Where a Ray sweep's trials run (None: inline, in this process)."""
    if executor != "ray":
        return None
    from sweeps.exec.raytune.cluster import RayTarget

    return RayTarget.from_settings(settings, ray_address)


def _decide_widths(prepared, target, settings: Settings, on_progress):
    """Every planned population's slice width, decided once before Ray starts or anything
    trains (quiet timings, where measuring pays and the trials train on this machine's CPU),
    and the slices a trial trains at once: the record the trials are told and the report
    is written from (sweeps/exec/trial.py: WidthBook)."""
    from sweeps.exec.trial import WidthBook, trial_threads

    spec = prepared.spec
    if target is None:  # inline: this process's cores (or the setting)
        threads, here = settings.cpu_threads, True
    else:
        from sweeps.exec.raytune.cluster import ray_trial_threads, trials_run_here

        here = trials_run_here(spec, target)
        threads = (
            trial_threads(spec, None, target.cpu_threads)
            if prepared.planner.adaptive
            else ray_trial_threads(spec, prepared.populations, target)
        )
    book = WidthBook(spec, prepared.data, settings.lane_policy(), threads)

    def tell(what: str) -> None:
        if on_progress:
            on_progress(Progress(phase=what, stage="measuring"))

    # the workers' CPUs are not this one: they take what is known, else the default rule
    measure = here and spec.resources.accelerator == "cpu"
    book.decide(prepared.populations, measure=measure, tell=tell)
    return book


def _watch_ray_head(folder: SweepFolder, opening: Future | None):
    """A lost Ray head ends the sweep truthfully (failed, runs FAILED, folder kept for
    resume) before Ray ends this process from C++ without any clean-up."""
    from sweeps.errors import EXIT_FAILED
    from sweeps.exec.raytune.cluster import HeadWatchdog

    def lost(reason: str) -> None:
        log.error("%s", reason)
        if opening and opening.done():
            with contextlib.suppress(Exception):
                opening.result().close("FAILED", reason)
        _record_ending(folder, "failed", reason)
        os._exit(EXIT_FAILED)  # Ray's own exit would come without any of the above

    return HeadWatchdog(lost).start()


def _record_ending(folder: SweepFolder, status: str, reason: str) -> None:
    """sweep.json says how the sweep ended, if it can: a folder that cannot be written (a full
    disk, very often the very error being recorded) must not hide the sweep's own error."""
    try:
        folder.set_state(status=status, error=reason)
    except (OSError, FolderError) as err:
        log.error(
            "%s could not record that the sweep %s (%s): it still says %s",
            folder / files.STATE,
            status,
            err,
            (files.read_json(folder / files.STATE) or {}).get("status", "nothing"),
        )


def _open_tracker(spec, folder, sweep_id, tracking_uri) -> Future:
    """Open the MLflow tracker in the background (importing MLflow and opening its store take
    seconds of Python): the tracker, when it is open."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-open")
    try:
        return pool.submit(_start_tracker, spec, folder, sweep_id, tracking_uri)
    finally:
        pool.shutdown(wait=False)  # its one thread ends with the task


def _start_ray(prepared, folder, target, widths):
    """Start Ray, compiling the trials' programs here meanwhile where that helps: the
    compile-ahead (sweeps/exec/raytune/cluster.py) or None."""
    from sweeps.exec.raytune.cluster import compile_ahead, init_ray

    spec = prepared.spec
    ahead = compile_ahead(
        spec, prepared.data, prepared.populations, folder.path, target, widths.widths()
    )
    try:
        init_ray(spec, target)
    except BaseException:
        if ahead:
            ahead.discard()
        raise
    return ahead


def ending_reason(err: BaseException) -> str:
    """What the folder and the MLflow runs say ended the sweep: a stop's own words, else the
    error's type and message."""
    if isinstance(err, (SweepInterrupted, KeyboardInterrupt)):
        return str(err) or "interrupted (Ctrl-C)"
    return f"{type(err).__name__}: {err}"


def _close_opened(pending, err: BaseException, dispatcher: Dispatcher | None = None) -> None:
    """Wait for the tracker being opened (a stop during start-up, or a failure while it was
    still opening), tell it what was trained so far (the dispatcher's lanes and points, if it
    was not attached yet) and close its runs with the status the ending deserves; a tracker
    that failed to open has nothing to close."""
    interrupted = isinstance(err, (SweepInterrupted, KeyboardInterrupt))
    try:
        tracker = pending.result()
    except BaseException:  # noqa: BLE001 - its own failure is `err` or comes after it
        return
    if dispatcher is not None:
        with contextlib.suppress(Exception):
            dispatcher.attach_opened(wait=True)
    reason = ending_reason(err)
    with contextlib.suppress(Exception):
        tracker.close("KILLED" if interrupted else "FAILED", reason)


def _start_tracker(spec, folder, sweep_id, tracking_uri):
    from sweeps.tracking.tracker import SweepTracker
    from sweeps.tracking.uri import resolve_tracking_uri

    tracker = SweepTracker(
        resolve_tracking_uri(tracking_uri), spec.experiment, folder / files.MLFLOW_STATE
    )
    tracker.start(spec=spec, sweep_id=sweep_id)
    return tracker


def _executor(prepared, folder, executor, target, ahead, widths):
    if executor == "inline":
        from sweeps.exec.inline import InlineExecutor

        return InlineExecutor(prepared.spec, prepared.data, widths)
    from sweeps.exec.raytune.executor import RayExecutor

    return RayExecutor(
        prepared.spec, prepared.data, folder.path, target=target, widths=widths, ahead=ahead
    )


def _noise_scale(spec, dispatcher, data, verdicts) -> dict | None:
    """The batch axis' gradient noise scale at the best LR (sweeps/transfer/noise.py); None
    for the other axes."""
    if spec.transfer.batch_size is None or not dispatcher.recorders:
        return None
    from sweeps.transfer.noise import noise_scale_at_best_lr

    return noise_scale_at_best_lr(spec, verdicts, data)


def _finish(prepared, folder, sweep_id, executor, dispatcher, timing, tracker, t0, widths) -> dict:
    """The verdict, once: after every point is in MLflow, with the lanes' run ids known."""
    spec = prepared.spec
    results = dispatcher.results()
    if tracker:
        tracker.flush()
        tracker.assign_run_ids(results)
    verdicts, winner = analyze_for(spec, results)
    report = build_report(
        spec=spec,
        sweep_id=sweep_id,
        executor=executor,
        results=results,
        verdicts=verdicts,
        winner=winner,
        timing={
            "wall_s": time.perf_counter() - t0,
            "compile_s": timing.compile_s,
            "train_s": timing.train_s,
            # the trials' own training seconds, every population summed (no compiles, no
            # worker start): what Ray's trials and inline are compared on
            "trials_train_s": sum(dispatcher.train_s.values()),
            # MLflow time while the sweep ran (the final report's own upload comes after)
            "log_s": tracker.log_seconds if tracker else 0.0,
            "tune_s": timing.tune_s,
            "lane_steps": lane_steps(results),
            "lane_steps_dense": lane_steps_dense(verdicts, results, spec.train.steps),
            **lane_width_report(prepared, dispatcher, widths),
        },
        mlflow=tracker.info if tracker else None,
        metric=spec.metric_name,
    )
    if spec.transfer is not None:  # the best LR predicted at the target (sweeps/transfer/)
        from sweeps.transfer.analysis import transfer_section

        data = prepared.data
        batch = data.n_train if spec.train.batch_size == "full" else spec.train.batch_size
        section = transfer_section(
            spec.transfer, results, verdicts, spec.train.steps, batch, data.n_train,
            _noise_scale(spec, dispatcher, data, verdicts),
        )  # fmt: skip
        report["transfer"] = json_safe(section)
    if prepared.data.vocabulary is not None:  # token ids -> characters, to read generations
        report["data"] = {"vocabulary": list(prepared.data.vocabulary)}
        files.write_json_atomic(folder / files.VOCABULARY, report["data"]["vocabulary"])
    write_report(report, folder.path)
    (folder / files.VERDICT).write_text(verdict_markdown(report))
    from sweeps.verdict.plots import write_sweep_plots  # matplotlib: only once there is a verdict

    write_sweep_plots(report, folder / files.PLOTS)
    if tracker:
        tracker.finish(results=results, report=report, artifacts_dir=folder / files.PLOTS)
    return report


def lane_width_report(prepared: Prepared, dispatcher: Dispatcher, widths) -> dict[str, Any]:
    """The width each population trained at, and the decision it came from, as it was made
    (the WidthBook's record, never decided again here): setting, measured now, read from this
    host's earlier measurement, or the default rule, with the figures it was made on."""
    by_group = {}
    for pop in prepared.populations:
        choice = widths.record.get(pop.id)
        if choice is not None:
            by_group[f"{pop.optimizer}-{pop.schedule}"] = {
                "width": choice["width"], "source": choice["source"],
                "reason": choice.get("reason"), "threads": choice.get("threads"),
                "seconds_per_lane_step": choice.get("seconds_per_lane_step"),
                "cost_per_step_s": choice.get("cost_per_step_s"),
            }  # fmt: skip
    return {
        "lane_width": dict(dispatcher.widths),
        "lane_threads": dict(dispatcher.threads),  # slices each population trained at once
        "lane_width_choice": by_group,
    }


# Besides sweep.json and spec.json, what `resume` reads where the first attempt wrote it.
RESUME_READS = (files.MLFLOW_STATE, files.PLAN)


def load_for_resume(sweep_dir: Path, settings: Settings | None = None) -> tuple[Prepared, dict]:
    """The prepared sweep and state of an interrupted sweep folder.

    Every state file is read before anything is written: a truncated or garbage one raises
    FolderError naming it, and the folder and its MLflow runs stay as they were. (Read
    leniently, a lost mlflow_state.json would start a second set of runs and a lost plan.json
    a different search.)"""
    folder = SweepFolder(sweep_dir)

    def refuse(problem: str) -> FolderError:
        return FolderError(f"sweep_dir: {problem}; the folder cannot be resumed")

    try:
        state, raw_spec = folder.read(files.STATE), folder.read(files.SPEC)
        for name in RESUME_READS:
            if (folder / name).exists():
                folder.read(name)
    except FolderError as err:
        raise refuse(str(err)) from None
    if not isinstance(state.get("sweep_id"), str) or not state["sweep_id"]:
        raise refuse(f"{files.STATE} has no sweep_id")
    try:
        spec = parse_spec(raw_spec)
    except SpecError as err:
        raise refuse(f"{files.SPEC} is not a valid sweep spec ({'; '.join(err.errors)})") from None
    base = Path(state["base_dir"]) if state.get("base_dir") else None
    return prepare(spec, base_dir=base, settings=settings), state
