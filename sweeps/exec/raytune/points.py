"""What a Ray trial trains, as a stream: its populations' eval points, each with the
checkpoint to keep (if one is due), wherever the training runs — in the trial's own process
(trainable.population_trainable) or in the warm trainer a kept head holds (warm.py).

The stream is plain data (JSON-ready metrics, a pickled checkpoint as bytes), so the trial that
reports it to Tune never needs JAX to read it."""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterator

import jax
import numpy as np
import ray

from sweeps.core.data import Dataset
from sweeps.core.population import Timing
from sweeps.core.prune import PruneState
from sweeps.exec.precompile import ProgramsFile, install_programs
from sweeps.plan.lanes import Population
from sweeps.plan.search import trial_score
from sweeps.stream import TrialPoint

# One eval point of a trial: (population id, step, the metrics to report, the checkpoint to
# report with them when one is due — the pickled population state — else None). Builtins only,
# so the process that reports it never imports what made it.
Point = tuple[str, int, dict, "bytes | None"]


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


def train_points(
    config: dict,
    saved: bytes | None,
    *,
    spec_json: str,
    populations: list[Population],
    data: Dataset,
    threads: int = 1,
    widths: dict[str, int] | None = None,
    checkpoint_every_s: float = 20.0,
    programs: ProgramsFile | None = None,
    user_objects: dict | None = None,
) -> Iterator[Point]:
    """Train a trial's populations one after another, each at the slice width the driver
    decided (`widths`, or the config's for a population an adaptive searcher made), `threads`
    slices at once, from the checkpoint `saved` (the bytes of an earlier point's checkpoint)
    when there is one; a checkpoint is due at most every `checkpoint_every_s` and at the end.

    `user_objects` are the user's model, loss and metrics by reference, shipped by value with
    the trial: this process may never have seen the files they came from."""
    from models import imports
    from sweeps.spec import SweepSpec

    imports.install(user_objects or {})
    spec = SweepSpec.model_validate_json(spec_json)
    check_backend(spec.resources.accelerator, jax.default_backend())
    pops = populations_from_config(config, populations)
    install_programs(programs, data)  # compiled by the driver while Ray started, if it could
    state = pickle.loads(saved) if saved is not None else None
    done = finished_before(state, pops, spec.train.steps)
    clock = {"last_save": time.monotonic(), "every_s": checkpoint_every_s}
    for i, pop in enumerate(pops):
        if i < done:
            continue
        resume = state is not None and state.get("population", pop.id) == pop.id
        start, start_step = (state["state"], state["step"]) if resume else (None, 0)
        # search.prune: the lanes stopped so far (the checkpoint's slices hold only the rest)
        pruned = PruneState.from_json(state["prune"]) if resume and state.get("prune") else None
        width = config.get("width") or (widths or {}).get(pop.id)
        yield from _train_one(spec, pop, data, width, threads, start, start_step, clock, pruned)


def finished_before(saved: dict | None, pops: list[Population], steps: int) -> int:
    """How many of the trial's populations its checkpoint shows finished."""
    if saved is None:
        return 0
    ids = [pop.id for pop in pops]
    at = ids.index(saved["population"]) if saved.get("population") in ids else 0
    return at + 1 if saved["step"] >= steps else at


def _train_one(
    spec, pop, data, width, threads, start, start_step, clock, pruned
) -> Iterator[Point]:
    """Train one population from `start_step`: its points, with a checkpoint when one is due."""
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
        due = last or time.monotonic() - clock["last_save"] > clock["every_s"]
        checkpoint = None
        if due and point.step > start_step:
            prune = None if point.prune is None else point.prune.to_json()
            state = jax.tree.map(np.asarray, point.state)
            checkpoint = pickle.dumps(
                {"state": state, "step": point.step, "population": pop.id, "prune": prune}
            )
            clock["last_save"] = time.monotonic()
        yield pop.id, point.step, metrics, checkpoint
