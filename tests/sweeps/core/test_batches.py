"""The lazy batch plan reads the same minibatches as drawing the whole run at once."""

from __future__ import annotations

import numpy as np
import pytest

from sweeps.core.batches import BatchPlan, batch_plan


def whole_run(n_rows: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """The reference: every epoch drawn up front from one generator, then cut into steps."""
    rng = np.random.default_rng(seed)
    if batch_size >= n_rows:
        return np.tile(np.arange(n_rows), (steps, 1))
    per_epoch = n_rows // batch_size
    epochs = [
        rng.permutation(n_rows)[: per_epoch * batch_size] for _ in range(-(-steps // per_epoch))
    ]
    return np.concatenate(epochs).reshape(-1, batch_size)[:steps]


@pytest.mark.parametrize(
    ("n_rows", "batch", "steps"), [(120, 32, 1000), (100, 7, 333), (10, 20, 7)]
)
def test_chunks_forwards_backwards_and_at_once_read_the_same_rows(n_rows, batch, steps):
    reference = whole_run(n_rows, batch, steps, seed=3)
    assert np.array_equal(batch_plan(n_rows, batch, steps, 3), reference)
    forwards = BatchPlan(n_rows, batch, steps, 3)
    for start in range(0, steps, 13):
        stop = min(steps, start + 13)
        assert np.array_equal(forwards.rows(start, stop), reference[start:stop])
    rng = np.random.default_rng(0)
    anywhere = BatchPlan(n_rows, batch, steps, 3)  # a resume starts mid-way; reads go back too
    for _ in range(100):
        start = int(rng.integers(0, steps))
        stop = int(rng.integers(start, steps + 1))
        assert np.array_equal(anywhere.rows(start, stop), reference[start:stop])


def test_a_long_run_holds_only_the_epochs_it_reads():
    plan = BatchPlan(120, 32, 2_000_000, 0)
    rows = plan.rows(1_500_000, 1_500_010)
    assert rows.shape == (10, 32) and rows.dtype == np.int32
    assert len(plan._held) <= 4  # not 2M steps' worth of rows
    with pytest.raises(ValueError, match="outside the plan"):
        plan.rows(1_999_990, 2_000_001)
