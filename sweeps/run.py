"""`goldilocks run` and `resume` as library functions.

spec -> prepare (data, lanes, populations) -> execute (inline | Ray Tune) with MLflow
tracking -> verdict -> report.json + plots, all in one sweep folder:

    DIR/spec.json        the validated spec (resume reads it)
    DIR/sweep.json       id, status (running | succeeded | failed | interrupted), error, mlflow
    DIR/progress.json    lane-steps done of total, trials (rewritten as the sweep goes)
    DIR/mlflow_state.json  lane -> MLflow run id map, so retries and resumes reuse runs
    DIR/points.jsonl     every eval point received (Ray executor), for resume
    DIR/ray/             Ray Tune's experiment state and trial checkpoints
    DIR/report.json, DIR/plots/*.png
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeps.analysis import analyze
from sweeps.data import DataError, Dataset
from sweeps.errors import SweepInterrupted
from sweeps.inline import Execution, run_inline
from sweeps.losses import get_loss
from sweeps.plan import Lane, Population, expand_lanes, plan_populations
from sweeps.plots import write_sweep_plots
from sweeps.progress import Progress, ProgressCallback
from sweeps.report import build_report, write_report
from sweeps.spec import SpecError, SweepSpec, check_against_data, parse_spec
from sweeps.trial import load_sweep_data

EXECUTORS = ("ray", "inline")


@dataclass
class Prepared:
    spec: SweepSpec
    data: Dataset
    lanes: list[Lane]
    populations: list[Population]
    base_dir: Path | None = None


def prepare(spec: SweepSpec, base_dir: Path | None = None) -> Prepared:
    """Load the data and plan the sweep; every input problem raises SpecError (nothing written)."""
    try:
        data = load_sweep_data(spec, base_dir)
    except DataError as err:
        raise SpecError([str(err)]) from None
    check_against_data(spec, data)
    # tpe proposes its points while it runs: its lanes are made by the Ray executor.
    lanes = [] if spec.search.method == "tpe" else expand_lanes(spec)
    return Prepared(spec, data, lanes, plan_populations(spec, lanes), base_dir)


def new_sweep_id(spec: SweepSpec) -> str:
    return f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def _write_json(path: Path, value: Any) -> None:
    """Atomic: readers (the service, `resume`) never see half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)


class SweepFolder:
    """The sweep's folder and its small state files."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def read(self, name: str) -> dict:
        return json.loads((self.path / name).read_text())

    def state(self) -> dict:
        return self.read("sweep.json")

    def set_state(self, **changes: Any) -> None:
        current = self.state() if (self.path / "sweep.json").exists() else {}
        _write_json(self.path / "sweep.json", {**current, **changes, "updated_at": time.time()})

    def progress_writer(self, forward: ProgressCallback | None) -> ProgressCallback:
        last = [0.0]

        def write(p: Progress) -> None:
            now = time.monotonic()
            if now - last[0] > 0.5 or p.fraction >= 1.0:  # bounded I/O on the hot path
                _write_json(self.path / "progress.json", {**p.as_dict(), "updated_at": time.time()})
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
    if executor == "inline" and prepared.spec.search.method == "tpe":
        raise SpecError(["search.method: tpe runs Ray Tune's Optuna searcher; use --executor ray"])
    spec = prepared.spec
    folder = SweepFolder(out_dir)
    folder.path.mkdir(parents=True, exist_ok=True)
    if resume:
        sweep_id = folder.state()["sweep_id"]
    sweep_id = sweep_id or new_sweep_id(spec)
    (folder.path / "spec.json").write_text(spec.model_dump_json(indent=1))
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
        tracker, ahead = _start(
            prepared, folder, sweep_id, executor, track, tracking_uri, ray_address
        )
        folder.set_state(mlflow=tracker.info if tracker else None)
        on_point = (
            (lambda trial_id, results, step: tracker.log_progress(results)) if tracker else None
        )
        progress = folder.progress_writer(on_progress)
        execution = _execute(
            prepared, folder.path, executor, on_point, progress, ray_address, resume, ahead
        )
        report = _finish(prepared, folder, sweep_id, executor, execution, tracker, t0)
    except (SweepInterrupted, KeyboardInterrupt) as err:
        reason = str(err) or "interrupted (Ctrl-C)"
        if tracker:
            tracker.close("KILLED", reason)
        folder.set_state(status="interrupted", error=reason)
        raise SweepInterrupted(reason) from None
    except BaseException as err:
        reason = f"{type(err).__name__}: {err}"
        if tracker:
            # MLflow itself may be what failed; the sweep folder still tells the truth.
            with contextlib.suppress(Exception):
                tracker.close("FAILED", reason)
        folder.set_state(status="failed", error=reason)
        raise
    folder.set_state(status="succeeded", error=None)
    return report


def _start(prepared, folder, sweep_id, executor, track, tracking_uri, ray_address):
    """Open the MLflow tracker, start Ray and compile the trials' programs at once (each takes
    seconds): (the tracker or None, the compile-ahead or None)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = (
            pool.submit(_start_tracker, prepared.spec, prepared, folder, sweep_id, tracking_uri)
            if track
            else None
        )
        ahead = None
        try:
            if executor == "ray":
                from sweeps.ray_executor import compile_ahead, init_ray

                ahead = compile_ahead(prepared, folder.path, ray_address)
                init_ray(prepared.spec, ray_address)
            return (pending.result() if pending else None), ahead
        except BaseException:
            if ahead:
                ahead.discard()
            raise


def _start_tracker(spec, prepared, folder, sweep_id, tracking_uri):
    from sweeps.tracking import SweepTracker, resolve_tracking_uri

    tracker = SweepTracker(
        resolve_tracking_uri(tracking_uri), spec.experiment, folder.path / "mlflow_state.json"
    )
    trial_of = {lane.index: pop.id for pop in prepared.populations for lane in pop.lanes}
    tracker.start(spec=spec, sweep_id=sweep_id, lanes=prepared.lanes, trial_of=trial_of)
    return tracker


def _execute(
    prepared, folder, executor, on_point, on_progress, ray_address, resume, ahead
) -> Execution:
    spec = prepared.spec
    if executor == "inline":
        return run_inline(
            spec, prepared.data, prepared.populations, on_progress=on_progress, on_point=on_point
        )
    from sweeps.ray_executor import run_ray

    return run_ray(
        spec, prepared.data, prepared.lanes, prepared.populations, folder,
        on_point=on_point, on_progress=on_progress, address=ray_address, resume=resume,
        ahead=ahead,
    )  # fmt: skip


def _finish(prepared, folder, sweep_id, executor, execution, tracker, t0) -> dict[str, Any]:
    spec = prepared.spec
    verdicts, winner = analyze(
        execution.results,
        loss=spec.loss,
        diverge_factor=spec.early_stopping.diverge_factor,
        stagnation_tolerance=spec.analysis.stagnation_tolerance,
        zone_tolerance=spec.analysis.zone_tolerance,
    )
    if tracker:
        tracker.flush()
        tracker.assign_run_ids(execution.results)
    timing = {
        "wall_s": time.perf_counter() - t0,
        "compile_s": execution.timing.compile_s,
        "train_s": execution.timing.train_s,
        "log_s": tracker.log_seconds if tracker else 0.0,
    }
    report = build_report(
        spec=spec,
        sweep_id=sweep_id,
        executor=executor,
        results=execution.results,
        verdicts=verdicts,
        winner=winner,
        timing=timing,
        mlflow=tracker.info if tracker else None,
        metric=get_loss(spec.loss).metric,
    )
    write_report(report, folder.path)
    write_sweep_plots(report, folder.path / "plots")
    if tracker:
        tracker.finish(
            results=execution.results, report=report, artifacts_dir=folder.path / "plots"
        )
        report["timing"]["log_s"] = round(tracker.log_seconds, 3)
        write_report(report, folder.path)
    return report


def load_for_resume(sweep_dir: Path) -> tuple[Prepared, dict]:
    """The prepared sweep and state of an interrupted sweep folder."""
    folder = SweepFolder(sweep_dir)
    state = folder.state()
    spec = parse_spec(folder.read("spec.json"))
    base = Path(state["base_dir"]) if state.get("base_dir") else None
    return prepare(spec, base_dir=base), state
