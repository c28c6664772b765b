"""The Ray Tune trainables: one trial trains its planned populations and reports them.

The population comes in the trial's config: an index into the planned populations for a
fixed plan, or the population itself (lanes and all, made by the driver's planner) for an
adaptive one. Every eval point is reported as a `TrialPoint`, several to a report (see
`Batcher`); the population state is checkpointed at eval points (at most every
`checkpoint_every_s`), so a retried trial resumes rather than restarts.

Two trainables, one report loop: `population_trainable` trains in the trial's own process;
`warm_trainable` (a one-trial-per-host sweep) has the warm trainer that Ray holds
train and only reports, so the trial never imports JAX or compiles (warm.py). This module
imports neither JAX nor the trainer: a warm trial starts in Ray's and Tune's import time only.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import ray
from ray import tune

STATE_FILE = "state.pkl"


def population_trainable(
    config: dict, *, per_point: bool, trial_hook: str | None = None, **train
) -> None:
    """One Tune trial trained here: `train` are `points.train_points`'s arguments; every point
    is its own report when `per_point` (ASHA's rungs count reports). `trial_hook`, an import
    reference, is called with (population id, step) at every eval point."""
    from sweeps.exec.raytune.points import train_points

    points = train_points(config, saved_checkpoint(), **train)
    report_points(points, per_point=per_point, hook=_hook(trial_hook))


def warm_trainable(
    config: dict, *, trainer_env: dict, call: list, per_point: bool,
    trial_hook: str | None = None,
) -> None:  # fmt: skip
    """One Tune trial trained by the warm trainer for `trainer_env` (warm.py): the trial reads
    its checkpoint, hands it over with `call` (one object ref to `train_points`'s arguments,
    which this process never loads) and reports the points the trainer streams back. Should
    the trainer die, the trial fails, and Tune's retry starts a new trainer and resumes from
    the trial's checkpoint."""
    from sweeps.exec.raytune.warm import warm_trainer

    # At most a few points ahead of the trial: the trainer never piles up checkpoints the trial
    # has not written, and a trainer lost mid-trial is lost at the point the trial reached.
    stream = warm_trainer(trainer_env).train.options(
        num_returns="streaming", _generator_backpressure_num_objects=4
    )
    points = (ray.get(ref) for ref in stream.remote(config, saved_checkpoint(), call[0]))
    report_points(points, per_point=per_point, hook=_hook(trial_hook))


def saved_checkpoint() -> bytes | None:
    """The trial's last checkpoint, as the bytes `train_points` reads, or None."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return (Path(folder) / STATE_FILE).read_bytes()


def report_points(points: Iterable, *, per_point: bool, hook: Callable | None = None) -> None:
    """Report a trial's points to Tune: batched (`Batcher`), each checkpoint with its point."""
    batch = Batcher(per_point=per_point)
    for population, step, metrics, checkpoint in points:
        if checkpoint is not None:
            with tempfile.TemporaryDirectory() as folder:
                (Path(folder) / STATE_FILE).write_bytes(checkpoint)
                tune.report(batch.take(metrics), checkpoint=tune.Checkpoint.from_directory(folder))
        elif batch.due(metrics):
            tune.report(batch.take(metrics))
        if hook is not None:
            hook(population, step)
    if batch.held:  # never left behind (the last point always reports, so only in theory)
        tune.report(batch.take(batch.held.pop()))


def _hook(trial_hook: str | None) -> Callable | None:
    if trial_hook is None:
        return None
    from models import imports

    return imports.resolve(trial_hook)


class Batcher:
    """Several eval points per `tune.report`: each report waits for the driver to ask for the
    next one (a round trip through Tune's event loop), so a fast trial reporting every point
    spends much of its time waiting. Points are held at most `every_s` (the progress a user
    sees lags by that much) and always sent with a checkpoint, so a checkpoint never runs
    ahead of what the driver has. The report carries the latest point as its own metrics (what
    Tune's searchers and stoppers read) and the earlier ones under "earlier". With ASHA every
    point is a report: its rungs count reports (`training_iteration`)."""

    def __init__(self, *, per_point: bool, every_s: float = 1.0):
        self.per_point, self.every_s = per_point, every_s
        self.held: list[dict] = []
        self.since = time.monotonic()

    def due(self, metrics: dict) -> bool:
        """Hold `metrics` unless a report is due now (then `take` it)."""
        if self.per_point or time.monotonic() - self.since >= self.every_s:
            return True
        self.held.append(metrics)
        return False

    def take(self, metrics: dict) -> dict:
        """`metrics` with the points held before it: one report."""
        report = {**metrics, "earlier": self.held} if self.held else metrics
        self.held, self.since = [], time.monotonic()
        return report
