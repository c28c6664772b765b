"""Which training rows each step sees: shuffled epochs shared by every lane of a sweep.

The plan is drawn lazily, epoch by epoch, as the chunks ask for it: a 2,000,000-step sweep on
a 120-row table would otherwise spend seconds and 256 MB on a (steps, batch) array before its
first step. The draws are the same whether read at once (`batch_plan`) or chunk by chunk.
"""

from __future__ import annotations

import numpy as np


class BatchPlan:
    """Row indices of steps [start, stop), drawn forwards from one seeded generator: epoch `e`
    is the `e`-th permutation it draws, so a resumed sweep sees the minibatches it would have.
    Only the epochs still ahead are kept (chunks read forwards)."""

    def __init__(self, n_rows: int, batch_size: int, steps: int, seed: int):
        self.n_rows, self.batch_size, self.steps, self.seed = n_rows, batch_size, steps, seed
        self._per_epoch = max(1, n_rows // batch_size)
        self._restart()

    def _restart(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._drawn = 0  # epochs drawn from `_rng` so far
        self._first = 0  # the epoch `_held[0]` is
        self._held: list[np.ndarray] = []  # (per_epoch, batch) each, from epoch `_first` on

    def rows(self, start: int, stop: int) -> np.ndarray:
        """(stop - start, batch) int32 row indices; steps outside the plan are refused."""
        if not 0 <= start <= stop <= self.steps:
            raise ValueError(f"steps [{start}, {stop}) outside the plan's 0..{self.steps}")
        if self.batch_size >= self.n_rows:  # full-batch gradient descent
            return np.tile(np.arange(self.n_rows, dtype=np.int32), (stop - start, 1))
        if stop == start:
            return np.zeros((0, self.batch_size), np.int32)
        first, last = start // self._per_epoch, (stop - 1) // self._per_epoch
        if first < self._first:  # read backwards: draw again from the first epoch
            self._restart()
        if first > self._first:  # epochs behind the reader are never read again
            del self._held[: first - self._first]
            self._first = first
        keep = self._per_epoch * self.batch_size
        while self._drawn <= last:
            perm = self._rng.permutation(self.n_rows)[:keep]  # every epoch draws, kept or not
            if self._drawn >= self._first:
                self._held.append(perm.reshape(self._per_epoch, self.batch_size))
            self._drawn += 1
        rows = np.concatenate(self._held[: last - self._first + 1]).astype(np.int32)
        offset = start - self._first * self._per_epoch
        return rows[offset : offset + stop - start]


def batch_plan(n_rows: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """(steps, batch) row indices of a whole run at once: what a plain reference loop reads."""
    return BatchPlan(n_rows, batch_size, steps, seed).rows(0, steps)


def chunk_inputs(plan: BatchPlan, step0: int, chunk: int, steps: int, batch_size: int):
    """(real steps, (row indices, step numbers, validity mask)) of the chunk starting at `step0`.

    The last chunk is padded with masked steps so every chunk has one shape (one compile)."""
    real = min(chunk, steps - step0)
    idx = np.zeros((chunk, batch_size), np.int32)
    idx[:real] = plan.rows(step0, step0 + real)
    numbers = np.arange(step0, step0 + chunk, dtype=np.int32)
    return real, (idx, numbers, np.arange(chunk) < real)
