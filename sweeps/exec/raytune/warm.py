"""The warm trainer a Ray on this machine holds: one long-lived process that trains the
one-trial-per-host sweeps (cluster.one_trial_per_host) of every driver that uses that Ray.

On a head kept by `goldilocks ray up` (or the service's Ray) every sweep is a new Ray job,
and Ray starts a new worker for each job's trial: its Python, Ray Tune, JAX and Flax imports
and the reload of its compiled programs from the persistent cache (~1.7 s of the demo's ~2 s
of Ray overhead beside inline, docs/benchmarks.md) were paid again by every command. The warm
trainer is a detached actor started by the first sweep and kept as long as that Ray runs (a
kept head: until `ray down`; a Ray this process started: until it leaves): JAX is imported
once and every program it compiled stays in memory. The Tune trial stays a Tune trial — it
holds the resources, reads and writes the checkpoints and reports every point — but it has the
warm trainer train (trainable.warm_trainable) and never imports JAX.

One warm trainer per trial environment (its threads, XLA flags and compile cache are fixed when
its process starts): a sweep whose trials would get another environment gets its own. The
actor asks for no CPUs: the trial that drives it holds them, so Tune's scheduling is unchanged.
Calls queue (one at a time), as one-trial-per-host trials do for the host's CPUs anyway.
"""

from __future__ import annotations

import hashlib
import json

import ray
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

NAMESPACE = "goldilocks"
MAX_PROGRAMS = 64  # compiled programs a warm trainer keeps across sweeps before starting over


class WarmTrainer:
    """Trains trials' populations, one call at a time (calls queue), for any driver."""

    def __init__(self):
        import jax  # noqa: F401  (paid once, here, not by every trial)

        from sweeps.exec.raytune import points  # noqa: F401

    def train(self, config: dict, saved: bytes | None, call: dict):
        """`points.train_points`, streamed back to the trial that asked."""
        from sweeps.core.program import cached_programs, forget_programs
        from sweeps.exec.raytune.points import train_points

        if cached_programs() > MAX_PROGRAMS:  # bounded memory over a long-kept head
            forget_programs()
        yield from train_points(config, saved, **call)

    def pid(self) -> int:
        import os

        return os.getpid()


def trainer_name(env: dict[str, str]) -> str:
    """The warm trainer for trials with this environment."""
    digest = hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()[:12]
    return f"goldilocks-trainer-{digest}"


def warm_trainer(env: dict[str, str]):
    """The kept head's warm trainer for this trial environment, started if none runs yet
    (detached: it outlives this driver and ends with the head)."""
    actor = ray.remote(WarmTrainer).options(
        name=trainer_name(env),
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=0,
        max_concurrency=1,
        runtime_env={"env_vars": env},
        # Not in the placement group of a trial that starts it (a retry after the trainer
        # died): Tune removes that group when the trial ends, and everything in it.
        scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=None),
    )
    return actor.remote()
