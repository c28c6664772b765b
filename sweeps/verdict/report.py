"""report.json: the contract of docs/report.md, built from analysed lane results."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from sweeps.folder import REPORT, write_json_atomic
from sweeps.plan.refine import dense_count
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
        "round": getattr(lane, "round", 1),
        "batch_size": getattr(lane, "batch_size", None),
        "model_width": getattr(lane, "model_width", None),
        "pruned_at_step": r.pruned_at_step,
    }
    if with_history:
        entry["history"] = r.history()
    return entry


def group_entry(v: GroupVerdict) -> dict[str, Any]:
    return dataclasses.asdict(v)


def lane_steps(results: list[LaneResult]) -> int:
    """Lane-steps trained: each lane's steps up to where it stopped (the end, or its rung)."""
    return int(sum(r.step[-1] if r.step else 0 for r in results))


def lane_steps_dense(verdicts: list[GroupVerdict], results: list[LaneResult], steps: int) -> int:
    """What a dense log grid would have cost for the same answer: per group, over the same
    range of LRs, neighbours as close as the coarsest precision reported (its edge ratio and
    the ratios bracketing its best LR; without those, its own widest gap), every seed."""
    total = 0
    for v in verdicts:
        lrs = sorted(v.curve.get("learning_rate", []))
        members = [r for r in results if r.lane.optimizer == v.optimizer
                   and r.lane.schedule == v.schedule and r.lane.optimizer_args == v.optimizer_args
                   and r.lane.schedule_args == v.schedule_args]  # fmt: skip
        seeds = len({r.lane.seed for r in members}) or 1
        if len(lrs) < 2:
            total += len(lrs) * seeds * steps
            continue
        precision = [v.edge_ratio] if v.edge_ratio else []
        b = v.best_lr_bracket
        if b and v.best_lr:
            precision += [x for x in (v.best_lr / b[0], b[1] / v.best_lr) if x > 1.0]
        if not precision:
            precision = [max(hi / lo for lo, hi in zip(lrs, lrs[1:], strict=False))]
        total += dense_count(lrs[0], lrs[-1], max(precision)) * seeds * steps
    return int(total)


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
        "winner": _winner_entry(winner, results) if winner else None,
        "timing": {k: round(v, 3) if isinstance(v, float) else v for k, v in timing.items()},
    }
    return json_safe(report)


def _winner_entry(winner: LaneResult, results: list[LaneResult]) -> dict[str, Any]:
    """The best single lane: at its group's best LR, the seed with the lowest validation loss.
    The table shows that LR's mean over seeds; `seeds_at_lr` says how many it averaged."""
    seeds = sum(
        r.lane.group_key == winner.lane.group_key
        and r.lane.learning_rate == winner.lane.learning_rate
        for r in results
    )
    return {**lane_entry(winner, with_history=False), "seeds_at_lr": seeds}


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
    """A finished sweep's report.json (its contract: docs/report.md)."""
    path = Path(sweep_dir) / REPORT
    if not path.exists():
        raise FileNotFoundError(f"{path}: no report (the sweep has not finished)")
    return json.loads(path.read_text())
