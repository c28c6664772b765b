"""A synthetic classification task as large as asked: a fixed random teacher network's labels.

`data: {name: teacher, n_samples: 60000}`. Inputs are standard normal; the labels are the
argmax of a fixed, randomly drawn one-hidden-layer tanh network (the *teacher*). The teacher
never changes with the sweep (its seed is fixed); only `n_samples` says how many rows are drawn,
so a study of long training horizons can have as much data as it needs and not overfit (the
digits' 1,347 training rows overfit within a few thousand steps: docs/transfer.md).
Plain numpy: no JAX, read by the data loader like any built-in.
"""

from __future__ import annotations

import numpy as np

TEACHER_FEATURES = 32
TEACHER_HIDDEN = 64
TEACHER_CLASSES = 10
TEACHER_SAMPLES = 10_000  # rows drawn when the spec gives no n_samples
_TEACHER_SEED = 20181204  # the teacher's weights: fixed, so every sweep sees the same task
_INPUT_SEED = 1  # the rows: row i is the same row whatever n_samples is


def teacher_table(
    n_samples: int = TEACHER_SAMPLES,
    *,
    n_features: int = TEACHER_FEATURES,
    hidden: int = TEACHER_HIDDEN,
    n_classes: int = TEACHER_CLASSES,
) -> tuple[np.ndarray, np.ndarray]:
    """(x (n, n_features) float64, y (n,) int labels 0..n_classes-1) of the teacher task."""
    if n_samples < 1:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    teacher = np.random.default_rng(_TEACHER_SEED)
    # gains of 2: the teacher's tanh units are neither linear nor saturated, and its classes
    # are all in use (each holds 3-20 % of the rows)
    w1 = teacher.standard_normal((n_features, hidden)) * 2.0 / np.sqrt(n_features)
    b1 = teacher.standard_normal(hidden) * 0.5
    w2 = teacher.standard_normal((hidden, n_classes)) * 2.0 / np.sqrt(hidden)
    x = np.random.default_rng(_INPUT_SEED).standard_normal((n_samples, n_features))
    y = np.argmax(np.tanh(x @ w1 + b1) @ w2, axis=1)
    return x, y.astype(np.int64)
