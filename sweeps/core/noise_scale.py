"""The gradient noise scale B_simple = tr(Σ) / |G|² (McCandlish et al. 2018, appendix A).

Σ is the covariance of one example's gradient, G the full gradient. Training with batches much
smaller than B_simple is noise-dominated (a bigger batch buys a proportionally bigger LR);
much larger, it is curvature-dominated (a bigger batch buys little). Two batch sizes' squared
gradient norms suffice: E|g_B|² = |G|² + tr(Σ)/B, so from a small and a big batch

    |G|² ≈ (B_big |g_big|² − B_small |g_small|²) / (B_big − B_small)
    tr(Σ) ≈ (|g_small|² − |g_big|²) / (1/B_small − 1/B_big)

each averaged over several batches drawn with replacement (so the identity holds exactly,
with no finite-population correction).

`gradient_noise_scale` measures it at the model's initialisation; `noise_scale_in_training`
trains one lane (a learning rate, its optimizer and schedule, one seed) with the trainer's own
program (sweeps/core/population.py) and measures it at a few steps of that run (0, T/4, T/2,
T by default). The scale usually grows as the loss falls (|G|² shrinks faster than tr(Σ)),
so the value at the end of the run is where the batch stops paying for that run; the early
values are lower bounds.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sweeps.core.data import Dataset
from sweeps.core.program import LaneState, Structure, make_hyperparams


def b_simple(norms_small: float, norms_big: float, small: int, big: int) -> dict[str, float]:
    """B_simple from the mean squared gradient norms at two batch sizes (appendix A)."""
    g2 = (big * norms_big - small * norms_small) / (big - small)
    trace = (norms_small - norms_big) / (1.0 / small - 1.0 / big)
    return {
        "g2": float(g2),
        "trace": float(trace),
        "b_simple": float(trace / g2) if g2 > 0 else float("inf"),
    }


def gradient_noise_scale(
    structure, data: Dataset, *, small: int, big: int, repeats: int = 16, seed: int = 0
) -> dict[str, float]:
    """B_simple of `structure`'s model and loss on the training rows at initialisation."""
    from sweeps.core.program import get_program

    prog = get_program(structure, data)
    params, state = prog.model.init(jax.random.key(seed))
    return noise_scale_at(prog, params, state, data, small=small, big=big, repeats=repeats,
                          seed=seed)  # fmt: skip


def noise_scale_at(
    prog, params, model_state, data: Dataset, *, small: int, big: int, repeats: int = 16,
    seed: int = 0,
) -> dict[str, float]:  # fmt: skip
    """B_simple of `prog`'s model and loss at `params` on the training rows."""
    rng = np.random.default_rng(seed)
    n = data.n_train
    big = min(big, n)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    norms = _squared_norms(prog)

    def mean_norm(size: int) -> float:
        rows = jnp.asarray(rng.choice(n, (repeats, size), replace=True))
        return float(jnp.mean(norms(params, model_state, x, y, rows)))

    return {**b_simple(mean_norm(small), mean_norm(big), small, big), "small": small, "big": big}


@functools.cache
def _squared_norms(prog):
    """|g_B|² of each batch of rows (repeats, B) at once: one compile per program and batch
    size, reused at every checkpoint (parameters are arguments, not constants)."""

    def norm2(params, model_state, x, y, rows):
        def loss(q):
            pred, _ = prog.model.apply(q, model_state, x[rows], False)
            return prog.loss.fn(pred, y[rows])

        g = jax.grad(loss)(params)
        return sum(jnp.sum(leaf.astype(jnp.float32) ** 2) for leaf in jax.tree.leaves(g))

    # one batch after another (lax.map, not vmap): memory for one gradient, whatever the model
    return jax.jit(lambda p, ms, x, y, rows: jax.lax.map(lambda r: norm2(p, ms, x, y, r), rows))


def checkpoint_steps(steps: int, eval_every: int, fractions: Sequence[float]) -> list[int]:
    """The evaluation steps (multiples of eval_every, and the last) nearest `fractions` of
    the run: the trainer hands out its parameters only there."""
    points = sorted({*range(0, steps, eval_every), steps})
    return sorted({min(points, key=lambda p: abs(p - f * steps)) for f in fractions})


def trained_lane(
    structure: Structure,
    data: Dataset,
    *,
    learning_rate: float,
    optimizer_args: Mapping[str, float],
    schedule_args: Mapping[str, float],
    seed: int,
    at_steps: Sequence[int],
    data_seed: int = 0,
) -> Iterator[tuple[int, LaneState]]:
    """One lane trained by the sweep's own trainer (a 1-lane population: the same program,
    batches and schedule a sweep lane gets), its LaneState (no lane axis) at each step of
    `at_steps` that is an evaluation step."""
    from sweeps.core.population import train_population

    hp = make_hyperparams([learning_rate], {k: [v] for k, v in optimizer_args.items()},
                          {k: [v] for k, v in schedule_args.items()})  # fmt: skip
    wanted = set(at_steps)
    points = train_population(structure, data, hp, np.array([seed]), data_seed=data_seed,
                              width=1, threads=1)  # fmt: skip
    for point in points:
        if point.step in wanted:  # a copy: the next chunk donates the point's buffers
            yield point.step, jax.tree.map(lambda a: jnp.array(a[0]), point.state[0])
        if point.step >= max(wanted):
            return


def noise_scale_in_training(
    structure: Structure,
    data: Dataset,
    *,
    learning_rate: float,
    optimizer_args: Mapping[str, float],
    schedule_args: Mapping[str, float],
    seed: int,
    small: int,
    big: int,
    fractions: Sequence[float] = (0.0, 0.25, 0.5, 1.0),
    repeats: int = 64,  # |G|² is small late in training: 16 batches left it below zero
    data_seed: int = 0,
) -> dict[str, Any]:
    """B_simple along one lane's run: the lane trained by the population trainer (a 1-lane
    population, the sweep's batches and schedule) up to structure.steps, measured at the
    checkpoints nearest `fractions` of the run. The top-level keys are the last checkpoint's
    (the end of the run, where the scale is largest); `trajectory` holds every checkpoint."""
    from sweeps.core.program import get_program

    prog = get_program(structure, data)
    trajectory = []
    lanes = trained_lane(structure, data, learning_rate=learning_rate,
                         optimizer_args=optimizer_args, schedule_args=schedule_args, seed=seed,
                         at_steps=checkpoint_steps(structure.steps, structure.eval_every,
                                                   fractions), data_seed=data_seed)  # fmt: skip
    for step, lane in lanes:
        if bool(lane.frozen):  # diverged: no run left to measure
            break
        got = noise_scale_at(prog, lane.params, lane.model_state, data, small=small, big=big,
                             repeats=repeats, seed=seed)  # fmt: skip
        trajectory.append({"step": step, **got})
    last = trajectory[-1] if trajectory else {"b_simple": float("nan"), "small": small,
                                                 "big": big}  # fmt: skip
    return {**{k: v for k, v in last.items() if k != "step"}, "at": "best_lr",
            "learning_rate": float(learning_rate), "seed": int(seed),
            "step": last.get("step"), "steps": [t["step"] for t in trajectory],
            "trajectory": trajectory}  # fmt: skip
