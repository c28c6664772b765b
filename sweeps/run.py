"""`goldilocks run` as a library function: spec -> plan -> execute -> verdict -> report + plots."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeps.analysis import analyze
from sweeps.data import DataError, Dataset
from sweeps.inline import run_inline
from sweeps.losses import get_loss
from sweeps.plan import Lane, Population, expand_lanes, plan_populations
from sweeps.plots import write_sweep_plots
from sweeps.progress import ProgressCallback
from sweeps.report import build_report, write_report
from sweeps.spec import SpecError, SweepSpec, check_against_data
from sweeps.trial import load_sweep_data


@dataclass
class Prepared:
    spec: SweepSpec
    data: Dataset
    lanes: list[Lane]
    populations: list[Population]


def prepare(spec: SweepSpec, base_dir: Path | None = None) -> Prepared:
    """Load the data and plan the sweep; every input problem raises SpecError (nothing written)."""
    try:
        data = load_sweep_data(spec, base_dir)
    except DataError as err:
        raise SpecError([str(err)]) from None
    check_against_data(spec, data)
    lanes = expand_lanes(spec)
    return Prepared(spec, data, lanes, plan_populations(spec, lanes))


def new_sweep_id(spec: SweepSpec) -> str:
    return f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def run_sweep(
    prepared: Prepared,
    out_dir: Path,
    *,
    executor: str = "inline",
    sweep_id: str | None = None,
    on_progress: ProgressCallback | None = None,
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Run a prepared sweep and write `report.json` and the plots into `out_dir`."""
    spec = prepared.spec
    sweep_id = sweep_id or new_sweep_id(spec)
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if executor == "inline":
        execution = run_inline(spec, prepared.data, prepared.populations, on_progress=on_progress)
    elif executor == "ray":
        from sweeps.ray_executor import run_ray

        execution = run_ray(
            spec, prepared.data, prepared.lanes, prepared.populations, out_dir,
            on_progress=on_progress, address=ray_address,
        )  # fmt: skip
    else:
        raise ValueError(f"unknown executor '{executor}'")
    verdicts, winner = analyze(
        execution.results,
        loss=spec.loss,
        diverge_factor=spec.early_stopping.diverge_factor,
        stagnation_tolerance=spec.analysis.stagnation_tolerance,
        zone_tolerance=spec.analysis.zone_tolerance,
    )
    timing = {
        "wall_s": time.perf_counter() - t0,
        "compile_s": execution.timing.compile_s,
        "train_s": execution.timing.train_s,
        "log_s": 0.0,
    }
    report = build_report(
        spec=spec,
        sweep_id=sweep_id,
        executor=executor,
        results=execution.results,
        verdicts=verdicts,
        winner=winner,
        timing=timing,
        mlflow=None,
        metric=get_loss(spec.loss).metric,
    )
    write_report(report, out_dir)
    write_sweep_plots(report, out_dir / "plots")
    return report
