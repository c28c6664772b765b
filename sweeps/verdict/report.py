"""report.json: the contract of DESIGN.md, built from analysed lane results."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from sweeps.folder import REPORT, write_json_atomic
from sweeps.spec import SweepSpec
from sweeps.verdict.analysis import GroupVerdict
from sweeps.verdict.results import LaneResult


def lane_entry(r: LaneResult, *, with_history: bool = True) -> dict[str, Any]:
    lane = r.lane
    entry = {
        "lane": lane.index,
        "run_id": r.run_id,
        "trial_id": r.trial_id,
        "optimizer": lane.optimizer,
        "schedule": lane.schedule,
        "learning_rate": lane.learning_rate,
        "seed": lane.seed,
        "optimizer_args": lane.optimizer_args,
        "schedule_args": lane.schedule_args,
        "status": r.status,
        "final_train_loss": r.final_train_loss,
        "best_val_loss": r.best_val_loss,
        "val_metric": r.best_val_metric,
        "diverged_at_step": r.diverged_at_step,
    }
    if with_history:
        entry["history"] = r.history()
    return entry


def group_entry(v: GroupVerdict) -> dict[str, Any]:
    return dataclasses.asdict(v)


def build_report(
    *,
    spec: SweepSpec,
    sweep_id: str,
    executor: str,
    results: list[LaneResult],
    verdicts: list[GroupVerdict],
    winner: LaneResult | None,
    timing: dict[str, float],
    mlflow: dict[str, Any] | None,
    metric: str,
) -> dict[str, Any]:
    report = {
        "name": spec.name,
        "sweep_id": sweep_id,
        "executor": executor,
        "mlflow": mlflow,
        "metric": metric,
        "groups": sorted(
            (group_entry(v) for v in verdicts), key=lambda g: (g["rank"] is None, g["rank"])
        ),
        "lanes": [lane_entry(r) for r in results],
        "winner": lane_entry(winner, with_history=False) if winner else None,
        "timing": {k: round(v, 3) for k, v in timing.items()},
    }
    return json_safe(report)


def json_safe(value: Any) -> Any:
    """NaN and infinities become null: report.json is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_report(report: dict[str, Any], out_dir: Path) -> Path:
    path = Path(out_dir) / REPORT
    write_json_atomic(path, report, strict=True)
    return path


def read_report(sweep_dir: Path) -> dict[str, Any]:
    """A finished sweep's report.json (see DESIGN's report contract)."""
    path = Path(sweep_dir) / REPORT
    if not path.exists():
        raise FileNotFoundError(f"{path}: no report (the sweep has not finished)")
    return json.loads(path.read_text())
