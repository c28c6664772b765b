"""The teacher task: as many rows as asked, the same task (and rows) whatever the size."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_spec_dict

from sweeps.core.data import DataError, load_dataset
from sweeps.core.synthetic import TEACHER_CLASSES, TEACHER_FEATURES, teacher_table
from sweeps.spec import SpecError, parse_spec


def test_as_many_rows_as_asked_with_every_class_in_use():
    ds = load_dataset(name="teacher", n_samples=5000, val_fraction=0.2)
    assert ds.n_train + ds.n_val == 5000
    assert ds.input_shape == (TEACHER_FEATURES,) and ds.num_classes == TEACHER_CLASSES
    shares = np.bincount(ds.y_train, minlength=TEACHER_CLASSES) / ds.n_train
    assert shares.min() > 0.02 and shares.max() < 0.3


def test_a_larger_draw_extends_the_same_task():
    x_small, y_small = teacher_table(200)
    x_big, y_big = teacher_table(2000)
    assert np.array_equal(x_small, x_big[:200]) and np.array_equal(y_small, y_big[:200])


def test_the_labels_are_a_function_of_the_inputs():
    """A teacher's labels, not noise: a nearest-neighbour vote on more data does better."""
    x, y = teacher_table(4000)
    test_x, test_y = x[:200], y[:200]

    def knn_accuracy(n):
        d = ((test_x[:, None] - x[200 : 200 + n][None]) ** 2).sum(-1)
        return np.mean(y[200 : 200 + n][d.argmin(1)] == test_y)

    assert knn_accuracy(3800) > knn_accuracy(100) > 1.5 / TEACHER_CLASSES


def test_n_samples_only_for_a_synthetic_dataset():
    with pytest.raises(DataError, match="data.n_samples"):
        load_dataset(name="iris", n_samples=100)
    with pytest.raises(SpecError, match="data.n_samples"):
        parse_spec(tiny_spec_dict(data={"name": "iris", "n_samples": 100}))
    spec = parse_spec(tiny_spec_dict(data={"name": "teacher", "n_samples": 100}))
    assert spec.data.n_samples == 100
