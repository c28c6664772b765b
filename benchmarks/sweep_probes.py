"""What benchmarks/vs_naive_ray.py measures its variants with: a fresh MLflow store per
variant, the run count in it, a progress callback that stamps a sweep's milestones, a timer
around one library function, the one-time warm-up, and the winner's place in the grid."""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import numpy as np

from sweeps.exec.raytune.collector import PointLog
from sweeps.folder import POINTS
from sweeps.pipeline import prepare
from sweeps.spec import SweepSpec
from sweeps.stream import Progress


def tracking_uri(folder: Path) -> str:
    """A fresh SQLite store per variant, so no two variants share a database lock."""
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


@contextlib.contextmanager
def timed_calls(module, name: str):
    """Time the calls of `module.name` while inside; yields a one-item list of seconds."""
    seconds = [0.0]
    original = getattr(module, name)

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds[0] += time.perf_counter() - t0

    setattr(module, name, timed)
    try:
        yield seconds
    finally:
        setattr(module, name, original)


def grid_index(lrs: list[float], lr: float | None) -> int | None:
    if lr is None:
        return None
    return int(np.argmin(np.abs(np.log(np.asarray(lrs)) - math.log(lr))))


def winner_lr(sweep: dict) -> float | None:
    return sweep["winner"]["learning_rate"] if sweep.get("winner") else None


class Timeline:
    """A progress callback that stamps the sweep's milestones, in seconds since `t0`: the
    first trial started (Ray: its worker is up; inline: the first evaluation), the first chunk of steps done (worker up, JAX imported, programs
    compiled, one chunk trained), and every lane-step done."""

    def __init__(self, t0: float):
        self.t0 = t0
        self.events: list[tuple[float, int, int, int]] = []

    def __call__(self, p: Progress) -> None:
        self.events.append(
            (time.perf_counter() - self.t0, p.lane_steps_done, p.lane_steps_total, p.trials_running)
        )

    def summary(self) -> dict:
        first = lambda cond: next((t for t, *rest in self.events if cond(*rest)), None)  # noqa: E731
        return {
            "trials_started_at_s": first(lambda done, total, running: running > 0),
            "first_chunk_at_s": first(lambda done, total, running: done > 0),
            "all_steps_at_s": first(lambda done, total, running: total and done >= total),
        }


def warm_up(tmp: Path, spec: SweepSpec) -> float:
    """Pay the one-time, in-process costs before any variant is timed (importing MLflow, its
    SQLite store and Ray's MLflow callback, scikit-learn and the dataset, matplotlib and the
    report code), so the first variant is not charged for what the later ones get for free.
    Returns the seconds a fresh SQLite store then still takes (tables created, migrations
    run; best of 2): a cost each variant pays once, for its own store."""
    from mlflow import MlflowClient
    from ray.air.integrations.mlflow import MLflowLoggerCallback  # noqa: F401

    import sweeps.tracking.tracker  # noqa: F401
    import sweeps.verdict.analysis  # noqa: F401
    import sweeps.verdict.plots  # noqa: F401
    import sweeps.verdict.report  # noqa: F401

    prepare(spec)  # imports scikit-learn, loads digits
    MlflowClient(tracking_uri(tmp / "warm-store")).create_experiment("warm")
    best = math.inf
    for i in range(2):
        t0 = time.perf_counter()
        MlflowClient(tracking_uri(tmp / f"probe-store-{i}")).create_experiment("probe")
        best = min(best, time.perf_counter() - t0)
    return best


def count_runs(uri: str, experiment: str) -> int:
    """MLflow runs in the variant's store (a sanity check that it logged at all)."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(experiment)
    if experiment is None:
        return 0
    return len(client.search_runs([experiment.experiment_id], max_results=10_000))


def trial_compiles(sweep_dir: Path) -> int:
    """Programs the Ray trials compiled themselves (0: all came compiled from the driver)."""
    rows = PointLog(sweep_dir / POINTS).read()
    last = {r["population_id"]: r.get("compiles", 0) for r in rows if "population_id" in r}
    return sum(last.values())
