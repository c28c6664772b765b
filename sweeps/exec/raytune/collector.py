"""The driver's side of Ray Tune: trial results in, the point stream out.

A Tune callback turns every trial result into a `TrialPoint` for the sweep's dispatcher and
appends it to points.jsonl, so `resume` rebuilds the histories of trials that had finished.
Tune pickles the RunConfig (callbacks included) with its experiment state and restores it as
it was, so the callback holds only a key; the live collector is looked up in `_COLLECTORS`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ray import tune

from sweeps.stream import Dispatcher, TrialPoint

# What points.jsonl keeps of a result: the point, and where and how it was trained.
_POINT_KEYS = (
    "population_id", "lane_indices", "eval_step", "train_loss", "val_loss", "val_metrics", "learning_rate",
    "diverged_at", "spiked", "init_loss", "node_id", "compiles", "compile_s", "width", "threads",
    "train_s",
)  # fmt: skip


class PointLog:
    """Every eval point the driver received, appended to `points.jsonl` in the sweep folder."""

    def __init__(self, path: Path):
        self.path = path

    def append(self, metrics: dict) -> None:
        self._write({k: metrics[k] for k in _POINT_KEYS if k in metrics})

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


@dataclass
class Collector:
    dispatcher: Dispatcher
    point_log: PointLog

    def replay(self) -> None:
        """Resume: the points and trial endings an earlier driver received."""
        for row in self.point_log.read():
            if "trial_ended" in row:
                self.dispatcher.finished.add(row["trial_ended"])
            elif row.get("population_id") in self.dispatcher.recorders:
                self.dispatcher.point(TrialPoint.from_json(row))

    def result(self, metrics: dict) -> None:
        """One trial report: its point, after the points it held back ("earlier", in order;
        see trainable.Batcher)."""
        for held in metrics.get("earlier", ()):
            self.point_log.append(held)
            self.dispatcher.point(TrialPoint.from_json(held))
        self.point_log.append(metrics)
        self.dispatcher.point(TrialPoint.from_json(metrics))


_COLLECTORS: dict[str, Collector] = {}


def register(key: str, collector: Collector) -> None:
    _COLLECTORS[key] = collector


def unregister(key: str) -> None:
    _COLLECTORS.pop(key, None)


class CollectorCallback(tune.Callback):
    """Feeds trial results to the sweep's collector, found by key (see _COLLECTORS)."""

    def __init__(self, key: str):
        self.key = key

    @property
    def collector(self) -> Collector:
        return _COLLECTORS[self.key]

    def on_trial_start(self, iteration, trials, trial, **info):
        self.collector.dispatcher.trial_started(trial.trial_id)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.collector.result(result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.collector.point_log.trial_ended(trial.trial_id)
        self.collector.dispatcher.trial_ended(trial.trial_id)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.collector.dispatcher.trial_ended(trial.trial_id, error=_error_text(trial))


def _error_text(trial) -> str:
    """The last line of the trial's error file: the exception, without Ray's framing."""
    path = getattr(trial, "error_file", None)
    try:
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
        return f"{trial}: {lines[-1]}" if lines else f"{trial}: failed"
    except (OSError, TypeError):
        return f"{trial}: failed"
