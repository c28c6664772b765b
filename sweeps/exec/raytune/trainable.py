"""The Ray Tune trainable: one trial trains one planned population on a worker.

The population comes in the trial's config: an index into the planned populations for a
fixed plan, or the population itself (lanes and all, made by the driver's planner) for an
adaptive one. Every eval point is reported as a `TrialPoint`, several to a report (see
`Batcher`); the population state is checkpointed at eval points (at most every
`checkpoint_every_s`), so a retried trial resumes rather than restarts.
"""

from __future__ import annotations

import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
from ray import tune

from sweeps.core.data import Dataset
from sweeps.core.population import Timing
from sweeps.core.prune import PruneState
from sweeps.exec.precompile import ProgramsFile, install_programs
from sweeps.plan.lanes import Population
from sweeps.plan.search import trial_score
from sweeps.stream import TrialPoint


def populations_from_config(config: dict, populations: list[Population]) -> list[Population]:
    """The trial's populations, in training order: one planned up front (an index), several
    (a list of indices: one trial per host), or one made by an adaptive searcher."""
    ref = config["population"]
    if isinstance(ref, list):
        return [populations[i] for i in ref]
    return [populations[ref] if isinstance(ref, int) else Population.from_json(ref)]


# JAX_PLATFORMS name -> what jax.default_backend() answers on it
BACKEND_OF = {"cpu": "cpu", "cuda": "gpu", "rocm": "gpu", "tpu": "tpu"}


def check_backend(platform: str, backend: str) -> None:
    """Fail loudly when the trial's JAX is not on the device Ray gave it."""
    if BACKEND_OF.get(platform, platform) != backend:
        raise RuntimeError(
            f"this trial was given {platform} but JAX runs on {backend}: install the matching "
            "jax extra on the workers (jax[cuda12], jax[tpu]) and check the devices they see"
        )


def population_trainable(
    config: dict,
    *,
    spec_json: str,
    populations: list[Population],
    data: Dataset,
    threads: int = 1,
    widths: dict[str, int] | None = None,
    checkpoint_every_s: float = 20.0,
    trial_hook: str | None = None,
    programs: ProgramsFile | None = None,
    user_objects: dict | None = None,
) -> None:
    """One Tune trial: train its populations one after another, each at the slice width the
    driver decided (`widths`, or the config's for a population an adaptive searcher made),
    `threads` slices at once, report every eval point, and checkpoint as it goes (at most
    every `checkpoint_every_s`: the population in progress and its state). `trial_hook`, an
    import reference, is called with (population id, step) at every eval point.

    `user_objects` are the user's model, loss and metrics by reference, shipped by value with
    the trial: this worker may never have seen the files they came from."""
    import jax

    from models import imports

    imports.install(user_objects or {})
    from sweeps.spec import SweepSpec

    spec = SweepSpec.model_validate_json(spec_json)
    check_backend(spec.resources.accelerator, jax.default_backend())
    pops = populations_from_config(config, populations)
    install_programs(programs, data)  # compiled by the driver while Ray started, if it could
    saved = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            saved = pickle.loads((Path(folder) / "state.pkl").read_bytes())
    done = _finished_before(saved, pops, spec.train.steps)
    batch = Batcher(per_point=spec.scheduler.name == "asha")
    clock = {"last_save": time.monotonic(), "every_s": checkpoint_every_s}
    hook = imports.resolve(trial_hook) if trial_hook else None
    for i, pop in enumerate(pops):
        if i < done:
            continue
        resume = saved is not None and saved.get("population", pop.id) == pop.id
        start, start_step = (saved["state"], saved["step"]) if resume else (None, 0)
        # search.prune: the lanes stopped so far (the checkpoint's slices hold only the rest)
        pruned = PruneState.from_json(saved["prune"]) if resume and saved.get("prune") else None
        width = config.get("width") or (widths or {}).get(pop.id)
        _train_one(spec, pop, data, width, threads, start, start_step, batch, clock, hook, pruned)
    if batch.held:  # never left behind (the last point always reports, so only in theory)
        tune.report(batch.take(batch.held.pop()))


def _finished_before(saved: dict | None, pops: list[Population], steps: int) -> int:
    """How many of the trial's populations its checkpoint shows finished."""
    if saved is None:
        return 0
    ids = [pop.id for pop in pops]
    at = ids.index(saved["population"]) if saved.get("population") in ids else 0
    return at + 1 if saved["step"] >= steps else at


def _train_one(
    spec, pop, data, width, threads, start, start_step, batch, clock, hook, pruned=None
) -> None:
    """Train one population of the trial from `start_step`, reporting and checkpointing."""
    import jax

    from sweeps.exec.trial import run_trial

    timing = Timing()
    node_id = ray.get_runtime_context().get_node_id()  # where it ran: shown, and tested
    points = run_trial(
        spec, pop, data, timing=timing, start=start, start_step=start_step, width=width,
        threads=threads, pruned=pruned,
    )  # fmt: skip
    for point in points:
        metrics = {
            **TrialPoint.of(pop.id, point, timing.compile_s, timing.train_s).to_json(),
            # ASHA compares trials by it; tpe's searcher is told the last one
            "score": trial_score(spec.search.method, point.val_loss),
            "lane_indices": [lane.index for lane in pop.lanes],
            "node_id": node_id,
            "compiles": timing.compiles,  # programs this trial had to compile itself
        }
        last = point.step == spec.train.steps
        save = last or time.monotonic() - clock["last_save"] > clock["every_s"]
        if save and point.step > start_step:
            with tempfile.TemporaryDirectory() as folder:
                state = jax.tree.map(np.asarray, point.state)
                prune = None if point.prune is None else point.prune.to_json()
                saved = {"state": state, "step": point.step, "population": pop.id, "prune": prune}
                blob = pickle.dumps(saved)
                (Path(folder) / "state.pkl").write_bytes(blob)
                tune.report(batch.take(metrics), checkpoint=tune.Checkpoint.from_directory(folder))
            clock["last_save"] = time.monotonic()
        elif batch.due(metrics):
            tune.report(batch.take(metrics))
        if hook is not None:
            hook(pop.id, point.step)


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
