"""The inline executor: every population trained in this process, one after the other.

The reference the Ray executor is measured against (and the debugging path): no Ray, no
subprocesses. Progress and per-eval-point hooks are called as training goes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sweeps.data import Dataset
from sweeps.losses import get_loss
from sweeps.plan import Population
from sweeps.population import Timing
from sweeps.progress import Progress, ProgressCallback
from sweeps.results import LaneRecorder, LaneResult
from sweeps.spec import SweepSpec
from sweeps.trial import run_trial

# Called after each eval point of a trial with that trial's lanes and the step reached.
PointCallback = Callable[[str, list[LaneResult], int], None]


@dataclass
class Execution:
    results: list[LaneResult]
    timing: Timing = field(default_factory=Timing)


def new_progress(spec: SweepSpec, populations: list[Population]) -> Progress:
    lanes = sum(len(p.lanes) for p in populations)
    return Progress(
        lane_steps_total=lanes * spec.train.steps,
        lanes_total=lanes,
        trials_total=len(populations),
    )


def run_inline(
    spec: SweepSpec,
    data: Dataset,
    populations: list[Population],
    *,
    on_progress: ProgressCallback | None = None,
    on_point: PointCallback | None = None,
) -> Execution:
    metric = get_loss(spec.loss).metric
    timing = Timing()
    progress = new_progress(spec, populations)
    results: list[LaneResult] = []
    for pop in populations:
        recorder = LaneRecorder(pop.lanes, pop.id, metric)
        progress.trials_running = 1
        done_before = progress.lane_steps_done
        for point in run_trial(spec, pop, data, timing=timing):
            recorder.record_point(point)
            if on_point:
                on_point(pop.id, recorder.results, point.step)
            progress.lane_steps_done = done_before + point.step * len(pop.lanes)
            if on_progress:
                on_progress(progress)
        progress.trials_done += 1
        progress.trials_running = 0
        results.extend(recorder.results)
    if on_progress:
        on_progress(progress)
    results.sort(key=lambda r: r.lane.index)
    return Execution(results, timing)
