"""What a sweep is called in MLflow: tag names, metric/param keys within MLflow's limits, run
names, and the values logged for lanes and for the report."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable
from typing import Any

from mlflow.entities import Param, RunTag

from sweeps.plan.lanes import Lane
from sweeps.spec import SweepSpec

# MLflow's limits (mlflow.utils.validation), restated so a change upstream shows up here.
# MLflow's limits (mlflow.utils.validation), restated so a change upstream shows up here.
MAX_METRICS_PER_CALL = 1000
MAX_PARAMS_PER_CALL = 100
MAX_TAGS_PER_CALL = 100
MAX_ENTITIES_PER_CALL = 1000  # metrics + params + tags together
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000
MAX_KEY_LENGTH = 250
# Spec values longer than this are unreadable as params anyway; the full spec is spec.json.
SPEC_PARAM_LENGTH = 500

TAG_SWEEP_ID = "goldilocks.sweep_id"
TAG_KIND = "goldilocks.kind"  # "sweep" (parent) or "lane" (child)
TAG_TRIAL_ID = "goldilocks.trial_id"
TAG_LANE = "goldilocks.lane"
TAG_ROUND = "goldilocks.round"  # the refinement round that made the lane (1: the spec's grid)
TAG_PRUNED_AT = "pruned_at_step"  # a lane stopped at a rung (search.prune)
TAG_ERROR = "goldilocks.error"
TAG_STATUS = "status"  # the lane's verdict, short so that `tags.status = 'diverged'` reads well
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"

_BAD_KEY_CHARS = re.compile(r"[^\w./\- :]")  # what MLflow accepts in metric/param/tag keys


def flatten(value: Any, prefix: str = "") -> Iterable[tuple[str, str]]:
    """{"search": {"learning_rate": {"min": 1e-5}}} -> ("search.learning_rate.min", "1e-05")."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from flatten(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield metric_key(prefix), param_value(value)


def param_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def metric_key(name: str) -> str:
    return _BAD_KEY_CHARS.sub("_", name)[:MAX_KEY_LENGTH]


def finite(value: Any) -> bool:
    """A number MLflow should get (numpy scalars included; None, bools, NaN and inf not)."""
    if value is None or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def now_ms() -> int:
    return int(time.time() * 1000)


def lane_params(spec: SweepSpec, lane: Lane) -> list[Param]:
    values: dict[str, Any] = {
        "learning_rate": repr(lane.learning_rate),
        "optimizer": lane.optimizer,
        "schedule": lane.schedule,
        "seed": str(lane.seed),
        **{f"opt.{k}": repr(v) for k, v in lane.optimizer_args.items()},
        **{f"sched.{k}": repr(v) for k, v in lane.schedule_args.items()},
        "model": json.dumps(spec.model.model_dump(mode="json")),
        "loss": spec.loss_name,
        "batch_size": str(spec.train.batch_size),
        "steps": str(spec.train.steps),
    }
    return [Param(metric_key(k), truncate(v, MAX_PARAM_LENGTH)) for k, v in values.items()]


def run_names(lanes: list[Lane], spec: SweepSpec) -> dict[int, str]:
    """Names like "adam-constant-lr1.2e-03-s0", plus the optimizer/schedule arguments the spec
    searches (list-valued), so runs of one sweep never share a name."""
    given = [spec.search.args_for(name) for name in spec.search.optimizer_names]
    searched = {
        "optimizer_args": {k for g in given for k, v in g.items() if isinstance(v, list)},
        "schedule_args": {k for k, v in spec.search.schedule_args.items() if isinstance(v, list)},
    }
    names = {}
    for lane in lanes:
        args = "".join(
            f"-{k}{v:g}"
            for attr in ("optimizer_args", "schedule_args")
            for k, v in sorted(getattr(lane, attr).items())
            if k in searched[attr]
        ) + _axis_suffix(lane.schedule_args.get("horizon"), getattr(lane, "batch_size", None),
                         getattr(lane, "model_width", None))  # fmt: skip
        # a refinement round's LRs lie within a few percent of each other: more digits
        rounds = getattr(lane, "round", 1)
        lr = f"{lane.learning_rate:.1e}" if rounds == 1 else f"{lane.learning_rate:.3e}"
        names[lane.index] = f"{lane.optimizer}-{lane.schedule}-lr{lr}{args}-s{lane.seed}" + (
            f"-r{rounds}" if rounds > 1 else ""
        )
    return names


def _axis_suffix(horizon, batch, width) -> str:
    """A transfer axis' value in a lane's run name: -T400 (steps), -b64, -w128."""
    return "".join(f"-{p}{v:g}" for p, v in (("T", horizon), ("b", batch), ("w", width))
                   if v is not None)  # fmt: skip


def report_metrics(report: dict[str, Any]) -> list[tuple[str, float]]:
    """Per group: "<optimizer>.<schedule>.best_lr" etc.; arguments join the prefix when needed."""
    groups = report.get("groups") or []
    prefixes = [f"{g['optimizer']}.{g['schedule']}" for g in groups]
    out = []
    for g, prefix in zip(groups, prefixes, strict=True):
        if prefixes.count(prefix) > 1:  # e.g. momentum searched over its beta
            args = {**(g.get("optimizer_args") or {}), **(g.get("schedule_args") or {})}
            args.update({k: g[k] for k in ("batch_size", "model_width") if g.get(k) is not None})
            prefix += "".join(f".{k}_{v:g}" for k, v in sorted(args.items()))
        zone = g.get("zone") or {}
        values = {
            "best_lr": g.get("best_lr"),
            "best_val_loss": g.get("best_val_loss"),
            f"best_val_{report.get('metric') or 'metric'}": g.get("best_val_metric"),
            "zone_low": zone.get("low"),
            "zone_high": zone.get("high"),
            "max_stable_lr": g.get("max_stable_lr"),
            "min_diverged_lr": g.get("min_diverged_lr"),
        }
        out += [(metric_key(f"{prefix}.{k}"), float(v)) for k, v in values.items() if finite(v)]
    return out + transfer_metrics(report)


def transfer_metrics(report: dict[str, Any]) -> list[tuple[str, float]]:
    """report.json["transfer"] on the parent run: transfer.<axis>.<optimizer>.<schedule>.*"""
    out = []
    for axis, section in (report.get("transfer") or {}).items():
        for g in section["groups"]:
            pred, fit = g["prediction"], g.get("fit") or {}
            check = g.get("verification") or {}
            values = {
                "predicted_lr": pred.get("best_lr"),
                "power_law_lr": pred.get("power_law_lr"),
                "exponent": fit.get("exponent"),
                "reliable": float(bool(pred.get("reliable"))),
                "direct_lr": check.get("best_lr"),
                "prediction_error": check.get("prediction_error"),
            }
            prefix = f"transfer.{axis}.{g['optimizer']}.{g['schedule']}"
            out += [(metric_key(f"{prefix}.{k}"), float(v)) for k, v in values.items()
                    if finite(v)]  # fmt: skip
    return out


def winner_tags(winner: dict[str, Any] | None) -> list[RunTag]:
    if not winner:
        return []
    return [
        RunTag(f"winner.{k}", truncate(v, MAX_TAG_LENGTH))
        for k, v in flatten(winner)
        if v != "null"
    ]
