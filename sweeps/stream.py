"""The point stream: what executors emit, and the driver-side dispatcher that fans it out.

Every executor turns training into one stream of `TrialPoint`s (one eval point of one
population: arrays over its lanes). The `Dispatcher` is the only consumer: it records each
lane's history (`LaneRecorder`), hands new history to its sinks (the MLflow tracker) and
keeps the sweep's `Progress` (shown by the CLI, written for the service).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from sweeps.plan.lanes import Lane, Population
from sweeps.verdict.results import LaneRecorder, LaneResult


@dataclass
class TrialPoint:
    """One eval point of one population, as host arrays over its lanes."""

    population_id: str
    step: int
    train_loss: np.ndarray
    val_loss: np.ndarray
    val_metrics: dict[str, np.ndarray]
    learning_rate: np.ndarray
    diverged_at: np.ndarray
    spiked: np.ndarray
    init_loss: np.ndarray | None = None
    compile_s: float = 0.0  # the trial's compile time so far
    width: int = 0  # lanes per compiled slice
    threads: int = 1  # slices trained at once
    train_s: float = 0.0  # the trial's seconds training this population so far (no compiles)
    pruned_at: np.ndarray | None = None  # search.prune: each lane's rung, -1 while it trains

    @classmethod
    def of(
        cls, population_id: str, point: Any, compile_s: float = 0.0, train_s: float = 0.0
    ) -> TrialPoint:
        """From the trainer's `EvalPoint`."""
        return cls(
            population_id, point.step, point.train_loss, point.val_loss, point.val_metrics,
            point.learning_rate, point.diverged_at, point.spiked, point.init_loss, compile_s,
            point.width, getattr(point, "threads", 1), train_s,
            None if getattr(point, "prune", None) is None else point.prune.pruned_at,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """The wire format (Tune results, points.jsonl): lists, keyed by name."""
        return {
            "population_id": self.population_id,
            "eval_step": self.step,
            "train_loss": self.train_loss.tolist(),
            "val_loss": self.val_loss.tolist(),
            "val_metrics": {k: v.tolist() for k, v in self.val_metrics.items()},
            "learning_rate": self.learning_rate.tolist(),
            "diverged_at": self.diverged_at.tolist(),
            "spiked": self.spiked.tolist(),
            "init_loss": None if self.init_loss is None else self.init_loss.tolist(),
            "compile_s": self.compile_s,
            "width": self.width,
            "threads": self.threads,
            "train_s": self.train_s,
            "pruned_at": None if self.pruned_at is None else self.pruned_at.tolist(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TrialPoint:
        init = d.get("init_loss")
        return cls(
            d["population_id"],
            int(d["eval_step"]),
            np.asarray(d["train_loss"], float),
            np.asarray(d["val_loss"], float),
            {k: np.asarray(v, float) for k, v in d["val_metrics"].items()},
            np.asarray(d["learning_rate"], float),
            np.asarray(d["diverged_at"]),
            np.asarray(d["spiked"]),
            None if init is None else np.asarray(init, float),
            float(d.get("compile_s", 0.0)),
            int(d.get("width", 0)),
            int(d.get("threads", 1)),
            float(d.get("train_s", 0.0)),
            None if d.get("pruned_at") is None else np.asarray(d["pruned_at"], np.int64),
        )


@dataclass
class Progress:
    lane_steps_done: int = 0
    lane_steps_total: int = 0
    lanes_total: int = 0
    trials_done: int = 0
    trials_total: int = 0
    trials_running: int = 0
    phase: str = ""  # what the sweep does before its first trial reports, e.g. measuring
    # measuring (the CPU lane width), starting (MLflow, Ray, compiles ahead), compiling (the
    # trials run, nothing trained yet), training (lane-steps move)
    stage: str = ""
    # Measured while training (progress_writer): the lane-steps per second since the
    # first lane-steps, and the seconds left at that pace; None until two points are in.
    lane_steps_per_s: float | None = None
    eta_s: float | None = None

    @property
    def fraction(self) -> float:
        return self.lane_steps_done / self.lane_steps_total if self.lane_steps_total else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "fraction": round(self.fraction, 4)}


ProgressCallback = Callable[[Progress], None]


def progress_writer(
    save: Callable[[dict], None], forward: ProgressCallback | None
) -> ProgressCallback:
    """Saves the progress (progress.json) at most twice a second (bounded I/O on the hot path), and at once
    when the stage changes; fills in the measured pace and ETA; forwards."""
    last = [0.0, None]  # when progress.json was last written, and the stage it said
    first: list[tuple[float, int]] = []  # (when, lane-steps) of the first lane-steps seen

    def write(p: Progress) -> None:
        now = time.monotonic()
        _pace(p, now, first)
        if now - last[0] > 0.5 or p.fraction >= 1.0 or p.stage != last[1]:
            save(p.as_dict())
            last[0], last[1] = now, p.stage
        if forward:
            forward(p)

    return write


def _pace(p: Progress, now: float, first: list[tuple[float, int]]) -> None:
    """The ETA from the measured throughput, counted from the first lane-steps trained: the
    time spent measuring, starting Ray and compiling before them says nothing of the pace."""
    if not p.lane_steps_done:
        return
    if not first:
        first.append((now, p.lane_steps_done))
        return
    t0, done0 = first[0]
    if p.lane_steps_done > done0 and now > t0:
        rate = (p.lane_steps_done - done0) / (now - t0)
        p.lane_steps_per_s = round(rate, 3)
        p.eta_s = round(max(0, p.lane_steps_total - p.lane_steps_done) / rate, 1)


class PointSink(Protocol):
    """What the dispatcher feeds besides the recorder (the MLflow tracker)."""

    def add_lanes(self, lanes: list[Lane], trial_id: str) -> None: ...

    def log_progress(self, results: list[LaneResult]) -> None: ...


@dataclass
class Dispatcher:
    """Fans the point stream out to the lane recorders, the sinks and the progress display."""

    metric: str
    steps: int
    expected_trials: int
    expected_lanes: int
    sinks: list[PointSink] = field(default_factory=list)
    on_progress: ProgressCallback | None = None

    def __post_init__(self) -> None:
        self.opening: list[tuple[Future, Callable]] = []  # sinks still opening
        self.recorders: dict[str, LaneRecorder] = {}
        self.running: set[str] = set()
        self.finished: set[str] = set()
        self.errors: dict[str, str] = {}
        self.compile_s: dict[str, float] = {}  # per population, as its trial last reported
        self.widths: dict[str, int] = {}  # per population: lanes per compiled slice
        self.threads: dict[str, int] = {}  # per population: slices trained at once
        self.train_s: dict[str, float] = {}  # per population: its trial's training seconds
        self.progress = Progress(
            lane_steps_total=self.expected_lanes * self.steps,
            lanes_total=self.expected_lanes,
            trials_total=self.expected_trials,
        )

    def attach_when_open(
        self, opening: Future, on_open: Callable[[Any], None] = lambda sink: None
    ) -> None:
        """A sink still opening (the MLflow tracker: training need not wait for it): attached
        at the first event after it has opened, and first told every lane and point so far;
        then `on_open(sink)`. Its opening's error, if any, is raised there (the sweep fails
        within seconds, as if it had waited)."""
        self.opening.append((opening, on_open))

    def attach_opened(self, wait: bool = False) -> None:
        """Attach the sinks that have opened (`wait`: every one, waiting for it)."""
        for opening, on_open in [o for o in self.opening if wait or o[0].done()]:
            self.opening.remove((opening, on_open))
            sink = opening.result()
            for population_id, recorder in self.recorders.items():
                sink.add_lanes([r.lane for r in recorder.results], population_id)
                sink.log_progress(recorder.results)
            self.sinks.append(sink)
            on_open(sink)

    def add_population(self, pop: Population) -> None:
        """A population was planned: record its lanes and tell the sinks."""
        if pop.id in self.recorders:
            return
        self.attach_opened()
        self.recorders[pop.id] = LaneRecorder(pop.lanes, pop.id, self.metric)
        # a refinement round plans more than was expected at the start
        lanes = sum(len(r.results) for r in self.recorders.values())
        p = self.progress
        p.lane_steps_total = max(p.lane_steps_total, lanes * self.steps)
        own = [min(h, self.steps) for r in self.recorders.values() for h in r.horizons]
        if any(h < self.steps for h in own):  # transfer.steps: each lane ends at its horizon
            p.lane_steps_total = int(sum(own))
        p.trials_total = max(p.trials_total, len(self.recorders))
        for sink in self.sinks:
            sink.add_lanes(list(pop.lanes), pop.id)

    def point(self, p: TrialPoint) -> None:
        self.attach_opened()
        recorder = self.recorders[p.population_id]
        recorder.record(p)
        self.compile_s[p.population_id] = p.compile_s
        self.widths[p.population_id] = p.width
        self.threads[p.population_id] = p.threads
        self.train_s[p.population_id] = p.train_s
        for sink in self.sinks:
            sink.log_progress(recorder.results)
        self._update()

    def trial_started(self, trial_id: str) -> None:
        self.running.add(trial_id)
        self._update()

    def trial_ended(self, trial_id: str, error: str | None = None) -> None:
        if error is not None:
            self.errors[trial_id] = error
        self.finished.add(trial_id)
        self.running.discard(trial_id)
        self._update()

    def results(self) -> list[LaneResult]:
        out = [r for rec in self.recorders.values() for r in rec.results if r.step]
        return sorted(out, key=lambda r: r.lane.index)

    def _update(self) -> None:
        p = self.progress
        p.lane_steps_done = sum(
            rec.steps_done(i) for rec in self.recorders.values() for i in range(len(rec.results))
        )
        p.lanes_total = max(
            self.expected_lanes, sum(len(r.results) for r in self.recorders.values())
        )
        p.trials_done = len(self.finished)
        p.trials_running = len(self.running - self.finished)
        p.stage = "training" if p.lane_steps_done else "compiling"
        if self.on_progress:
            self.on_progress(p)
