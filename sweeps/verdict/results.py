"""Per-lane results: the history each lane builds up as its population streams eval points.

Plain data: the driver's dispatcher (sweeps/stream.py) fills one `LaneRecorder` per
population from the executor's point stream, whichever executor ran it. Analysis and reports
read `LaneResult`s only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sweeps.core.schedules import HORIZON
from sweeps.plan.lanes import Lane


@dataclass
class LaneResult:
    lane: Lane
    trial_id: str
    metric: str  # the headline validation metric ("accuracy", "r2")
    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)  # NaN at step 0 (nothing trained)
    val_loss: list[float] = field(default_factory=list)
    val_metric: list[float] = field(default_factory=list)
    extra_metrics: dict[str, list[float]] = field(default_factory=dict)  # e.g. rmse
    learning_rate: list[float] = field(default_factory=list)
    initial_train_loss: float = math.nan  # the first minibatch loss
    diverged_at_step: int | None = None
    spiked: bool = False
    pruned_at_step: int | None = None  # stopped at a rung (search.prune), its history to there
    status: str | None = None  # set by analysis
    run_id: str | None = None  # set by tracking

    @property
    def initial_val_loss(self) -> float:
        return self.val_loss[0] if self.val_loss else math.nan

    @property
    def final_train_loss(self) -> float:
        finite = [v for v in self.train_loss if math.isfinite(v)]
        return finite[-1] if finite and self.diverged_at_step is None else _last(self.train_loss)

    @property
    def best_index(self) -> int | None:
        """The eval point with the lowest finite validation loss (after step 0)."""
        candidates = [(v, i) for i, v in enumerate(self.val_loss) if i > 0 and math.isfinite(v)]
        return min(candidates)[1] if candidates else None

    @property
    def best_val_loss(self) -> float:
        i = self.best_index
        return self.val_loss[i] if i is not None else math.inf

    @property
    def best_val_metric(self) -> float:
        i = self.best_index
        return self.val_metric[i] if i is not None else math.nan

    def history(self) -> dict[str, list[Any]]:
        h = {
            "step": self.step,
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "val_metric": self.val_metric,
            "learning_rate": self.learning_rate,
        }
        return {**h, **self.extra_metrics}


def _rung(point, i: int) -> int | None:
    at = getattr(point, "pruned_at", None)
    return int(at[i]) if at is not None and at[i] >= 0 else None


def _last(values: list[float]) -> float:
    return values[-1] if values else math.nan


class LaneRecorder:
    """Appends eval points (arrays over a population's lanes) to each lane's history."""

    def __init__(self, lanes: list[Lane] | tuple[Lane, ...], trial_id: str, metric: str):
        self.metric = metric
        self.results = [LaneResult(lane, trial_id, metric) for lane in lanes]
        # a lane's own horizon (transfer.steps), else no end but the population's
        self.horizons = [lane.schedule_args.get(HORIZON, math.inf) for lane in lanes]
        self.last_step = 0  # the population's latest eval point

    def steps_done(self, i: int) -> int:
        """Lane i's steps as progress counts them: a pruned lane is done as far as its
        population has gone (its history stops at its rung, its share of the work with it)."""
        r = self.results[i]
        done = r.step[-1] if r.step else 0
        if r.pruned_at_step is not None:
            done = max(done, int(min(self.last_step, self.horizons[i])))
        return done

    def record(self, point) -> None:
        """Append one eval point (a `TrialPoint`: arrays over this population's lanes)."""
        self.last_step = max(self.last_step, int(point.step))
        for i, r in enumerate(self.results):
            if r.step and point.step <= r.step[-1]:
                continue  # a retried trial replays points we already have
            if point.step > self.horizons[i]:
                continue  # past its own horizon (transfer.steps) the lane's run has ended
            rung = _rung(point, i)
            if rung is not None:
                r.pruned_at_step = rung  # (search.prune) its history stops at the rung
                if point.step > rung:
                    continue
            r.step.append(int(point.step))
            r.train_loss.append(float(point.train_loss[i]))
            r.val_loss.append(float(point.val_loss[i]))
            r.val_metric.append(float(point.val_metrics[self.metric][i]))
            for name, values in point.val_metrics.items():
                if name != self.metric:
                    r.extra_metrics.setdefault(f"val_{name}", []).append(float(values[i]))
            r.learning_rate.append(float(point.learning_rate[i]))
            r.diverged_at_step = int(point.diverged_at[i]) if point.diverged_at[i] >= 0 else None
            r.spiked = bool(point.spiked[i])
            if point.init_loss is not None:
                r.initial_train_loss = float(point.init_loss[i])
