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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeps import folder as files
from sweeps.budget import check_budget
from sweeps.core.data import DataError, Dataset, load_dataset
from sweeps.errors import FolderError, SpecError, SweepInterrupted
from sweeps.folder import SweepFolder
from sweeps.plan.lanes import Lane, Population
from sweeps.plan.planner import Planner
from sweeps.spec import SweepSpec, check_against_data, parse_spec
from sweeps.stream import Dispatcher, Progress, ProgressCallback
from sweeps.verdict.analysis import analyze
from sweeps.verdict.plots import write_sweep_plots
from sweeps.verdict.report import (
    build_report,
    lane_steps,
    lane_steps_dense,
    verdict_markdown,
    write_report,
)

EXECUTORS = ("ray", "inline")

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """A validated spec, its data and its plan: everything a run needs, nothing written yet."""

    spec: SweepSpec
    data: Dataset
    planner: Planner
    base_dir: Path | None = None
    ran: bool = False  # its planner hands out each population once: one run per Prepared

    @property
    def lanes(self) -> list[Lane]:
        """The lanes planned so far (all of them for grid and random; tpe makes them as it runs)."""
        return self.planner.lanes

    @property
    def populations(self) -> list[Population]:
        return self.planner.populations


def load_sweep_data(spec: SweepSpec, base_dir: Path | None = None) -> Dataset:
    d = spec.data
    path, text = d.path, d.text
    if d.dataset is not None:  # an upload: a table or arrays, or a text corpus (.txt)
        upload = uploaded_dataset(d.dataset)
        path, text = (None, str(upload)) if upload.suffix == ".txt" else (str(upload), None)
    return load_dataset(
        name=d.name,
        path=path,
        text=text,
        block_size=d.block_size or 64,
        arrays=_loader_arrays(d.import_, d.args) if d.import_ else None,
        target=d.target,
        task=d.task,
        val_fraction=d.val_fraction,
        standardize=d.standardize,
        seed=spec.train.data_seed,
        base_dir=base_dir,
    )


def uploaded_dataset(dataset_id: str) -> Path:
    """The file of a dataset uploaded to the service (`POST /datasets`), by its id."""
    from sweeps.settings import get_settings

    root = get_settings().datasets_dir
    folder = root / dataset_id if root else None
    found = sorted(p for p in folder.iterdir() if p.is_file()) if folder and folder.is_dir() else []
    if not found:
        raise DataError("data.dataset", f"no uploaded dataset {dataset_id!r} here")
    return found[0]


def _loader_arrays(ref: str, args: dict[str, Any]) -> dict[str, Any]:
    """What a data loader returns (a mapping of arrays, or (x, y)), or the arrays themselves
    when the reference names them (handed to the Python API)."""
    from models import imports

    try:
        source = imports.resolve(ref)
    except imports.ImportFailed as err:
        raise DataError("data.import", str(err)) from None
    if callable(source):
        try:
            source = source(**args)
        except Exception as err:  # the user's loader
            raise DataError("data.import", f"{ref} raised {type(err).__name__}: {err}") from err
    if isinstance(source, tuple) and len(source) == 2:
        source = {"x": source[0], "y": source[1]}
    if not hasattr(source, "keys"):
        raise DataError(
            "data.import",
            f"{ref} gave a {type(source).__name__}; return a mapping of arrays "
            "(x/y or x_train/y_train/x_val/y_val) or a pair (x, y)",
        )
    return dict(source)


def resolve_imports(spec: SweepSpec, base_dir: Path | None = None) -> SweepSpec:
    """The spec with its files' references made absolute, each one checked to import
    (SpecError naming the field, before anything is created)."""
    from models import imports

    refs = {field: imports.canonical(ref, base_dir) for field, ref in spec.import_refs().items()}
    errors = []
    for field, ref in refs.items():
        try:
            imports.resolve(ref)
        except imports.ImportFailed as err:
            errors.append(f"{field}: {err}")
    if errors:
        raise SpecError(errors)
    return spec.with_import_refs(refs) if refs else spec


def prepare(spec: SweepSpec, base_dir: Path | None = None) -> Prepared:
    """Load the data and plan the sweep; every input problem raises SpecError (nothing written)."""
    spec = resolve_imports(spec, base_dir)
    try:
        data = load_sweep_data(spec, base_dir)
    except DataError as err:
        raise SpecError([str(err)]) from None
    check_against_data(spec, data)
    planner = Planner(spec)
    check_budget(spec, data, planner)  # steps, lane-steps, memory: before anything exists
    return Prepared(spec, data, planner, base_dir)


def new_sweep_id(spec: SweepSpec) -> str:
    return f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def progress_writer(folder: SweepFolder, forward: ProgressCallback | None) -> ProgressCallback:
    """Writes progress.json at most twice a second (bounded I/O on the hot path), and forwards."""
    last = [0.0]

    def write(p: Progress) -> None:
        now = time.monotonic()
        if now - last[0] > 0.5 or p.fraction >= 1.0:
            folder.write_progress(p.as_dict())
            last[0] = now
        if forward:
            forward(p)

    return write


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
) -> dict[str, Any]:
    """Run (or resume) a prepared sweep; write report.json and plots into `out_dir`.

    Raises `SweepInterrupted` (Ctrl-C/SIGTERM; resumable) or `SweepFailed`; either way every
    MLflow run is closed with a true status and the sweep folder says what happened.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor '{executor}'; choose one of: {', '.join(EXECUTORS)}")
    if prepared.ran:  # its planner has nothing left: it would train nothing and "succeed"
        raise ValueError("this prepared sweep has run already: prepare the spec again")
    prepared.ran = True
    spec, planner = prepared.spec, prepared.planner
    folder = SweepFolder(out_dir)
    folder.path.mkdir(parents=True, exist_ok=True)
    if resume:
        sweep_id = folder.state()["sweep_id"]
    sweep_id = sweep_id or new_sweep_id(spec)
    (folder / files.SPEC).write_text(spec.model_dump_json(indent=1))
    # The folder says "running" before anything can fail, so every ending below is recorded.
    folder.set_state(
        sweep_id=sweep_id,
        name=spec.name,
        executor=executor,
        status="running",
        error=None,
        base_dir=str(prepared.base_dir) if prepared.base_dir else None,
        pid=os.getpid(),
    )
    tracker = None
    t0 = time.perf_counter()
    try:
        planner.persist(folder / files.PLAN, resume=resume)
        progress = progress_writer(folder, on_progress)
        tune_s = _measure_lane_widths(prepared, executor, ray_address, progress)
        tracker, ahead = _start(
            prepared, folder, sweep_id, executor, track, tracking_uri, ray_address
        )
        folder.set_state(mlflow=tracker.info if tracker else None)
        dispatcher = Dispatcher(
            metric=spec.metric_name,
            steps=spec.train.steps,
            expected_trials=planner.expected_trials,
            expected_lanes=planner.expected_lanes,
            sinks=[tracker] if tracker else [],
            on_progress=progress,
        )
        planner.subscribe(dispatcher.add_population)
        planner.follow(dispatcher)  # refinement rounds are planned from the lanes' results
        runner = _executor(prepared, folder, executor, ray_address, ahead)
        watchdog = _watch_ray_head(folder, tracker) if executor == "ray" else None
        try:
            timing = runner.run(planner, dispatcher, resume=resume)
        finally:
            if watchdog:
                watchdog.stop()
        timing.tune_s += tune_s
        report = _finish(prepared, folder, sweep_id, executor, dispatcher, timing, tracker, t0)
    except (SweepInterrupted, KeyboardInterrupt) as err:
        reason = str(err) or "interrupted (Ctrl-C)"
        if tracker:
            tracker.close("KILLED", reason)
        _record_ending(folder, "interrupted", reason)
        raise SweepInterrupted(reason) from None
    except BaseException as err:
        reason = f"{type(err).__name__}: {err}"
        if tracker:
            # MLflow itself may be what failed; the sweep folder still tells the truth.
            with contextlib.suppress(Exception):
                tracker.close("FAILED", reason)
        _record_ending(folder, "failed", reason)
        raise
    folder.set_state(status="succeeded", error=None)
    return report


def _measure_lane_widths(prepared, executor, ray_address, on_progress) -> float:
    """The CPU lane widths, measured before Ray starts or anything trains (quiet timings),
    where the trials train on this machine; the seconds it took."""
    if prepared.spec.resources.accelerator != "cpu":
        return 0.0
    if executor == "ray":
        from sweeps.exec.raytune.cluster import trials_run_here

        if not trials_run_here(prepared.spec, ray_address):
            return 0.0  # the workers' CPUs are not this one: they take the default rule
    from sweeps.exec.trial import measure_lane_widths

    def tell(what: str) -> None:
        if on_progress:
            on_progress(Progress(phase=what))

    threads = _trial_threads(prepared, executor)
    return measure_lane_widths(prepared.spec, prepared.data, prepared.populations, tell, threads)


def _trial_threads(prepared: Prepared, executor: str) -> int | None:
    """Slices a trial trains at once: a Ray trial's (sweeps/exec/trial.py); inline, this
    process's (None)."""
    from sweeps.exec.trial import trial_threads

    if executor != "ray":
        return None
    fixed = None if prepared.planner.adaptive else len(prepared.populations)
    return trial_threads(prepared.spec, fixed)


def _watch_ray_head(folder: SweepFolder, tracker):
    """A lost Ray head ends the sweep truthfully (failed, runs FAILED, folder kept for
    resume) before Ray ends this process from C++ without any clean-up."""
    from sweeps.errors import EXIT_FAILED
    from sweeps.exec.raytune.cluster import HeadWatchdog

    def lost(reason: str) -> None:
        log.error("%s", reason)
        if tracker:
            with contextlib.suppress(Exception):
                tracker.close("FAILED", reason)
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


def _start(prepared, folder, sweep_id, executor, track, tracking_uri, ray_address):
    """Open the MLflow tracker, start Ray and compile the trials' programs at once (each takes
    seconds): (the tracker or None, the compile-ahead or None)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = (
            pool.submit(_start_tracker, prepared.spec, folder, sweep_id, tracking_uri)
            if track
            else None
        )
        ahead = None
        try:
            if executor == "ray":
                from sweeps.exec.raytune.cluster import compile_ahead, init_ray

                spec = prepared.spec
                ahead = compile_ahead(
                    spec, prepared.data, prepared.populations, folder.path, ray_address
                )
                init_ray(spec, ray_address)
            return (pending.result() if pending else None), ahead
        except BaseException:
            if ahead:
                ahead.discard()
            raise


def _start_tracker(spec, folder, sweep_id, tracking_uri):
    from sweeps.tracking.tracker import SweepTracker
    from sweeps.tracking.uri import resolve_tracking_uri

    tracker = SweepTracker(
        resolve_tracking_uri(tracking_uri), spec.experiment, folder / files.MLFLOW_STATE
    )
    tracker.start(spec=spec, sweep_id=sweep_id)
    return tracker


def _executor(prepared, folder, executor, ray_address, ahead):
    if executor == "inline":
        from sweeps.exec.inline import InlineExecutor

        return InlineExecutor(prepared.spec, prepared.data)
    from sweeps.exec.raytune.executor import RayExecutor

    return RayExecutor(prepared.spec, prepared.data, folder.path, address=ray_address, ahead=ahead)


def _finish(prepared, folder, sweep_id, executor, dispatcher, timing, tracker, t0) -> dict:
    """The verdict, once: after every point is in MLflow, with the lanes' run ids known."""
    spec = prepared.spec
    results = dispatcher.results()
    if tracker:
        tracker.flush()
        tracker.assign_run_ids(results)
    verdicts, winner = analyze(
        results,
        loss=spec.loss_name,
        higher_is_better=spec.higher_is_better,
        diverge_factor=spec.early_stopping.diverge_factor,
        stagnation_tolerance=spec.analysis.stagnation_tolerance,
        zone_tolerance=spec.analysis.zone_tolerance,
    )
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
            # MLflow time while the sweep ran (the final report's own upload comes after)
            "log_s": tracker.log_seconds if tracker else 0.0,
            "tune_s": timing.tune_s,
            "lane_steps": lane_steps(results),
            "lane_steps_dense": lane_steps_dense(verdicts, results, spec.train.steps),
            **lane_width_report(prepared, dispatcher, _trial_threads(prepared, executor)),
        },
        mlflow=tracker.info if tracker else None,
        metric=spec.metric_name,
    )
    if prepared.data.vocabulary is not None:  # token ids -> characters, to read generations
        report["data"] = {"vocabulary": list(prepared.data.vocabulary)}
        files.write_json_atomic(folder / files.VOCABULARY, report["data"]["vocabulary"])
    write_report(report, folder.path)
    (folder / files.VERDICT).write_text(verdict_markdown(report))
    write_sweep_plots(report, folder / files.PLOTS)
    if tracker:
        tracker.finish(results=results, report=report, artifacts_dir=folder / files.PLOTS)
    return report


def lane_width_report(
    prepared: Prepared, dispatcher: Dispatcher, threads: int | None = None
) -> dict[str, Any]:
    """The width each population trained at, and what this host measured for its structure
    (seconds per lane-step by candidate width, `threads` slices at once), where known here."""
    from sweeps.core.population import lane_choice, slice_threads
    from sweeps.exec.trial import structure_for

    threads = threads or slice_threads()
    measured = {}
    for pop in prepared.populations:
        structure = structure_for(prepared.spec, pop, prepared.data)
        choice = lane_choice(structure, prepared.data, len(pop.lanes), threads=threads)
        measured[f"{pop.optimizer}-{pop.schedule}"] = {
            "width": choice["width"],
            "source": choice["source"],
            "threads": threads,
            "seconds_per_lane_step": choice.get("measured"),
        }
    return {
        "lane_width": dict(dispatcher.widths),
        "lane_threads": dict(dispatcher.threads),  # slices each population trained at once
        "lane_width_choice": measured,
    }


# Besides sweep.json and spec.json, what `resume` reads where the first attempt wrote it.
RESUME_READS = (files.MLFLOW_STATE, files.PLAN)


def load_for_resume(sweep_dir: Path) -> tuple[Prepared, dict]:
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
    return prepare(spec, base_dir=base), state
