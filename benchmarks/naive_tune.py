"""The naive baseline of benchmarks/vs_naive_ray.py: a learning-rate sweep "the way people do
it today", one Ray Tune trial per learning rate.

`tune.grid_search(lrs)` over a function trainable that builds the same model (`make_model`)
with plain `optax.adam(lr)`, jits its own train step (so every trial imports JAX and compiles in
its own fresh worker: `reuse_actors=False`), trains on the sweep's minibatches (`batch_plan`)
and `tune.report`s the validation loss and accuracy every `eval_every` steps; logged by Ray's
`MLflowLoggerCallback` (one run per trial); two trials at a time on one CPU each.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import ray
from ray import tune

from models import MLPSpec, make_model
from sweeps.core.batches import batch_plan
from sweeps.core.data import Dataset
from sweeps.core.losses import get_loss
from sweeps.core.program import data_shape
from sweeps.exec.raytune.cluster import worker_env
from sweeps.pipeline import prepare
from sweeps.plan.search import learning_rates
from sweeps.spec import SweepSpec


def start_ray(env_vars: dict[str, str]) -> float:
    """A fresh local Ray for (b), started the way `sweeps.exec.raytune.cluster.init_ray` starts one,
    except `address="local"`: on a shared machine a bare `ray.init()` joins whatever cluster
    another process left running (and then refuses `num_cpus`). Returns the seconds it took."""
    ray.shutdown()
    t0 = time.perf_counter()
    ray.init(
        address="local",
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        runtime_env={"env_vars": env_vars},
        log_to_driver=False,
        configure_logging=False,
    )
    return time.perf_counter() - t0


def naive_trainable(
    config: dict,
    *,
    data: Dataset,
    hidden: list[int],
    steps: int,
    eval_every: int,
    batch_size: int,
    seed: int,
) -> None:
    """One Tune trial per learning rate, written the usual way: plain `optax.adam(lr)`, a
    jitted train step called from a Python loop, a jitted evaluation every `eval_every` steps.
    Module level, so Ray can pickle it."""
    import jax
    import jax.numpy as jnp
    import optax

    loss = get_loss("cross_entropy", task=data.task)
    model = make_model(MLPSpec(name="mlp", hidden=hidden), data_shape(data, loss))
    tx = optax.adam(config["lr"])
    params, state = model.init(jax.random.key(seed))  # state: {} (no BatchNorm, no dropout)
    opt_state = tx.init(params)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    xv, yv = jnp.asarray(data.x_val), jnp.asarray(data.y_val)

    @jax.jit
    def train_step(params, opt_state, x, y, rows):
        xb, yb = x[rows], y[rows]
        objective = lambda p: loss.fn(model.apply(p, state, xb, True)[0], yb)  # noqa: E731
        value, grads = jax.value_and_grad(objective)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    @jax.jit
    def evaluate(params, xv, yv):
        pred, _ = model.apply(params, state, xv, False)
        return loss.fn(pred, yv), loss.metrics(pred, yv)

    plan = batch_plan(data.n_train, batch_size, steps, 0)  # the sweep's data_seed: 0
    best, chunk = math.inf, []
    for step in range(steps):
        params, opt_state, value = train_step(params, opt_state, x, y, plan[step])
        chunk.append(value)
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            val_loss, metrics = evaluate(params, xv, yv)
            val_loss = float(val_loss)
            if math.isfinite(val_loss):
                best = min(best, val_loss)
            tune.report({
                "step": step + 1,
                "train_loss": float(np.mean(np.asarray(chunk))),
                "val_loss": val_loss,
                **{f"val_{k}": float(v) for k, v in metrics.items()},
                "best_val_loss": best,
            })  # fmt: skip
            chunk = []


def run_naive(
    spec: SweepSpec, tmp: Path, uri: str, *, hidden: list[int], batch_size: int, seed: int
) -> dict:
    """Ray Tune, one trial per LR of `spec`'s grid, fresh worker per trial, logged to `uri` by
    MLflowLoggerCallback (experiment `spec.experiment`), Tune's files under `tmp`."""
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    env = worker_env(spec)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # no persistent compile cache for (b)
    lrs = learning_rates(spec)
    ray.shutdown()
    t0 = time.perf_counter()
    ray_init_s = start_ray(env)
    data = prepare(spec).data  # the same split as (a) and (c)
    trainable = tune.with_parameters(
        naive_trainable, data=data, steps=spec.train.steps, eval_every=spec.train.eval_every,
        hidden=hidden, batch_size=batch_size, seed=seed,
    )  # fmt: skip
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"lr": tune.grid_search(lrs)},
        tune_config=tune.TuneConfig(max_concurrent_trials=2, reuse_actors=False),
        run_config=tune.RunConfig(
            name="naive",
            storage_path=str((tmp / "b").resolve()),
            callbacks=[MLflowLoggerCallback(tracking_uri=uri, experiment_name=spec.experiment)],
            verbose=0,
        ),
    )
    t_fit = time.perf_counter()
    grid = tuner.fit()
    fit_s = time.perf_counter() - t_fit
    wall = time.perf_counter() - t0
    ray.shutdown()
    if grid.errors:
        raise RuntimeError(f"{len(grid.errors)} naive trial(s) failed: {grid.errors[0]}")
    best = {r.config["lr"]: r.metrics.get("best_val_loss", math.inf) for r in grid}
    finite = {lr: v for lr, v in best.items() if math.isfinite(v)}
    return {
        "wall_s": wall,
        "ray_init_s": ray_init_s,
        "fit_s": fit_s,
        "lanes": len(lrs),
        "best_lr": min(finite, key=finite.get) if finite else None,
        # Seconds inside each trainable (compile + training + reports), not worker start.
        "trial_s": sorted(r.metrics.get("time_total_s", math.nan) for r in grid),
    }
