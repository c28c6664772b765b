"""Pieces the benchmarks share: clocks, the matmul peak, running calls side by side, and one
`train_population` run timed. JAX is imported inside the functions, so a parent process that
only orchestrates children (benchmarks/architectures.py, benchmarks/gpu_check.py) never
starts a JAX client of its own."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np


class Clock:
    """Wall and process CPU seconds (all threads). On a shared machine the CPU seconds are the
    steadier figure: they count the work done, not the time spent waiting for a core."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def measure_peak(n: int = 2048, repeats: int = 5, dtype: str = "float32") -> float:
    """GFLOP/s of a warm, jitted n x n matmul in `dtype` (default precision, as training runs
    it: on a recent NVIDIA GPU float32 may use TF32), best of `repeats`."""
    import jax
    import jax.numpy as jnp

    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.random.normal(ka, (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(kb, (n, n), jnp.float32).astype(dtype)
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        matmul(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def side_by_side(threads: int, calls: list) -> list:
    """Each call (a thunk that runs and waits for one program), `threads` at a time."""
    if threads <= 1:
        return [call() for call in calls]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda call: call(), calls))


def adam_hyperparams(structure: Any, lrs: np.ndarray):
    """Each lane's learning rate and the optimizer's default arguments."""
    from sweeps.core.optimizers import get_optimizer
    from sweeps.core.program import make_hyperparams

    defaults = get_optimizer(structure.optimizer).defaults
    return make_hyperparams(lrs, {k: np.full(len(lrs), v) for k, v in defaults.items()}, {})


def train_once(structure: Any, data: Any, lrs: np.ndarray, seed: int = 0, threads=None, width=None):
    """One `train_population` run, every lane from init `seed`: (wall s, CPU s, Timing, last
    EvalPoint)."""
    from sweeps.core import population

    timing = population.Timing()
    clock = Clock()
    last = None
    for point in population.train_population(
        structure,
        data,
        adam_hyperparams(structure, lrs),
        np.full(len(lrs), seed),
        timing=timing,
        width=width,
        threads=threads,
    ):
        last = point
    wall, cpu = clock.stop()
    return wall, cpu, timing, last


# the transfer benchmarks' LR grids (transfer.py, horizon_ladder.py): two per octave, a step of
# 1.41x, the parabola through the best and its neighbours doing the rest
TRANSFER_LR_RANGES = {"adam": (1e-4, 1e-1), "sgd": (1e-2, 10.0)}


def transfer_lr_grid(optimizer: str, per_octave: int = 2) -> dict[str, float]:
    """The spec's `search.learning_rate` for `optimizer` in the transfer benchmarks."""
    lo, hi = TRANSFER_LR_RANGES[optimizer]
    return {"min": lo, "max": hi, "num": int(round(np.log2(hi / lo) * per_octave)) + 1}
