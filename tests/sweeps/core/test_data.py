"""Tests for sweeps.core.data: builtins, file formats, splitting, standardization and every DataError."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sweeps.core.data import BUILTIN_DATASETS, DataError, Dataset, load_dataset


def _check_arrays(ds: Dataset) -> None:
    """Dtype/shape/layout contract every Dataset must satisfy."""
    y_dtype = np.int32 if ds.task == "classification" else np.float32
    for a in (ds.x_train, ds.x_val):
        assert a.dtype == np.float32 and a.flags.c_contiguous and a.ndim == 2
    for a in (ds.y_train, ds.y_val):
        assert a.dtype == y_dtype and a.flags.c_contiguous
    assert ds.x_train.shape == (ds.n_train, ds.n_features)
    assert ds.x_val.shape == (ds.n_val, ds.n_features)
    assert len(ds.feature_names) == ds.n_features
    if ds.task == "classification":
        assert ds.y_train.shape == (ds.n_train,) and ds.n_targets == 1
        assert ds.num_classes == len(ds.class_names)
        assert ds.y_train.min() >= 0 and ds.y_train.max() < ds.num_classes
    else:
        assert ds.y_train.shape == (ds.n_train, ds.n_targets)
        assert ds.num_classes is None and ds.class_names is None


# --- builtins ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "task", "rows", "features", "classes"),
    [
        ("digits", "classification", 1797, 64, 10),
        ("iris", "classification", 150, 4, 3),
        ("wine", "classification", 178, 13, 3),
        ("breast_cancer", "classification", 569, 30, 2),
        ("diabetes", "regression", 442, 10, None),
        ("moons", "classification", 1000, 2, 2),
        ("linear", "regression", 1000, 8, None),
    ],
)
def test_builtins(name: str, task: str, rows: int, features: int, classes: int | None) -> None:
    ds = load_dataset(name=name)
    assert ds.name == name and ds.task == task
    assert ds.n_train + ds.n_val == rows
    assert ds.n_val == round(0.2 * rows)
    assert ds.n_features == features and ds.num_classes == classes
    _check_arrays(ds)


def test_builtin_list_is_complete() -> None:
    assert set(BUILTIN_DATASETS) == {
        "digits",
        "iris",
        "wine",
        "breast_cancer",
        "diabetes",
        "moons",
        "linear",
        "pydoc_topics",
        "teacher",
    }


def test_digits_is_flat_image() -> None:
    ds = load_dataset(name="digits", standardize=False)
    assert ds.image_shape == (8, 8, 1)
    assert ds.x_train.shape[1] == 8 * 8 * 1
    assert ds.class_names == tuple(str(i) for i in range(10))
    assert ds.x_train.min() == 0 and ds.x_train.max() == 16  # raw pixel intensities
    assert load_dataset(name="iris").image_shape is None


def test_builtin_class_names_follow_label_order() -> None:
    ds = load_dataset(name="iris")
    assert ds.class_names == ("setosa", "versicolor", "virginica")


def test_synthetic_data_does_not_depend_on_seed() -> None:
    # Only the split changes with the seed; the union of rows is the same fixed dataset.
    a = load_dataset(name="moons", seed=1, val_fraction=0, standardize=False)
    b = load_dataset(name="moons", seed=2, val_fraction=0, standardize=False)
    key = lambda ds: np.sort(ds.x_train, axis=0)  # noqa: E731
    np.testing.assert_array_equal(key(a), key(b))
    assert not np.array_equal(a.x_train, b.x_train)  # but the order is shuffled by seed


def test_linear_is_nearly_linear() -> None:
    ds = load_dataset(name="linear", val_fraction=0, standardize=False)
    x = np.c_[ds.x_train, np.ones(ds.n_train)]
    _, residual, *_ = np.linalg.lstsq(x, ds.y_train, rcond=None)
    assert np.sqrt(residual[0] / ds.n_train) < 0.15  # noise std is 0.1


# --- split ------------------------------------------------------------------------------


def test_split_is_deterministic_by_seed() -> None:
    a = load_dataset(name="iris", seed=3)
    b = load_dataset(name="iris", seed=3)
    c = load_dataset(name="iris", seed=4)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.x_val, c.x_val)


def test_split_follows_documented_permutation() -> None:
    # With val_fraction=0 the training rows are all rows in permutation order...
    whole = load_dataset(name="wine", val_fraction=0, standardize=False, seed=7)
    ds = load_dataset(name="wine", val_fraction=0.25, standardize=False, seed=7)
    # ...so validation is the first round(0.25 * n) of them and training the rest.
    n_val = round(0.25 * 178)
    assert ds.n_val == n_val and ds.n_train == 178 - n_val
    np.testing.assert_array_equal(ds.x_val, whole.x_train[:n_val])
    np.testing.assert_array_equal(ds.x_train, whole.x_train[n_val:])
    np.testing.assert_array_equal(ds.y_val, whole.y_train[:n_val])


def test_split_has_no_overlap() -> None:
    ds = load_dataset(name="moons", standardize=False, val_fraction=0.3)
    train = {tuple(r) for r in ds.x_train}
    assert not train & {tuple(r) for r in ds.x_val}
    assert ds.n_val == 300 and ds.n_train == 700


def test_val_fraction_zero_uses_training_arrays() -> None:
    ds = load_dataset(name="iris", val_fraction=0)
    assert ds.x_val is ds.x_train and ds.y_val is ds.y_train
    assert ds.n_train == ds.n_val == 150


# --- standardization --------------------------------------------------------------------


def test_standardize_uses_training_stats_only() -> None:
    ds = load_dataset(name="wine", val_fraction=0.3)
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(axis=0), 1, atol=1e-4)
    # Validation was scaled with the training stats, so it is not itself exactly 0/1.
    assert np.abs(ds.x_val.mean(axis=0)).max() > 1e-3
    assert np.abs(ds.x_val.std(axis=0) - 1).max() > 1e-3


def test_standardize_regression_targets() -> None:
    raw = load_dataset(name="diabetes", standardize=False, seed=5)
    ds = load_dataset(name="diabetes", seed=5)
    assert raw.y_mean is None and raw.y_std is None
    assert ds.y_mean.shape == ds.y_std.shape == (1,) and ds.y_mean.dtype == np.float32
    np.testing.assert_allclose(ds.y_mean, raw.y_train.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(ds.y_std, raw.y_train.std(axis=0), rtol=1e-5)
    np.testing.assert_allclose(ds.y_val * ds.y_std + ds.y_mean, raw.y_val, rtol=1e-4)
    np.testing.assert_allclose(ds.y_train.mean(), 0, atol=1e-5)


def test_classification_targets_are_never_standardized() -> None:
    ds = load_dataset(name="iris")
    assert ds.y_mean is None and ds.y_std is None
    assert set(np.unique(ds.y_train)) == {0, 1, 2}


def test_constant_column_becomes_zero(tmp_path: Path) -> None:
    df = pd.DataFrame({"c": [0.1] * 20, "a": np.arange(20.0), "target": [0, 1] * 10})
    df.to_csv(tmp_path / "d.csv", index=False)
    ds = load_dataset(path=tmp_path / "d.csv")
    assert np.all(ds.x_train[:, 0] == 0) and np.all(ds.x_val[:, 0] == 0)
    assert np.isfinite(ds.x_train).all()


def test_no_standardize_keeps_values() -> None:
    ds = load_dataset(name="iris", standardize=False, val_fraction=0)
    assert ds.x_train.min() > 0  # raw iris measurements are all positive cm


# --- files ------------------------------------------------------------------------------


def test_csv_with_string_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.array(["dog", "cat", "emu"])[np.arange(30) % 3]
    df = pd.DataFrame({"a": rng.normal(size=30), "b": np.arange(30), "animal": labels})
    df.to_csv(tmp_path / "pets.csv", index=False)
    ds = load_dataset(path=tmp_path / "pets.csv", target="animal", val_fraction=0)
    assert ds.name == "pets" and ds.task == "classification"
    assert ds.class_names == ("cat", "dog", "emu") and ds.num_classes == 3
    assert ds.feature_names == ("a", "b")
    # Labels map to the sorted originals: row order follows the permutation.
    perm = np.random.default_rng(0).permutation(30)
    np.testing.assert_array_equal(np.array(ds.class_names)[ds.y_train], labels[perm])
    _check_arrays(ds)


def test_csv_relative_path_and_default_target(tmp_path: Path) -> None:
    df = pd.DataFrame({"x1": np.arange(20.0), "y": np.linspace(0, 1, 20)})
    df.to_csv(tmp_path / "reg.csv", index=False)
    ds = load_dataset(path="reg.csv", base_dir=tmp_path)
    assert ds.task == "regression" and ds.feature_names == ("x1",)
    assert ds.y_train.shape == (16, 1)
    _check_arrays(ds)


def test_target_column_preferred_over_y(tmp_path: Path) -> None:
    df = pd.DataFrame({"y": np.arange(20.0), "target": [0, 1] * 10})
    df.to_csv(tmp_path / "both.csv", index=False)
    ds = load_dataset(path=tmp_path / "both.csv")
    assert ds.feature_names == ("y",) and ds.task == "classification"


def test_parquet(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {"f0": np.arange(50.0), "f1": np.arange(50) % 7, "flag": np.arange(50) % 2 == 0}
    )
    df["label"] = np.where(df.f0 > 20, 5, 2)
    df.to_parquet(tmp_path / "p.parquet")
    ds = load_dataset(path=str(tmp_path / "p.parquet"), target="label", seed=1)
    assert ds.name == "p" and ds.task == "classification"
    assert ds.class_names == ("2", "5") and ds.feature_names == ("f0", "f1", "flag")
    _check_arrays(ds)


def test_npz_regression_multi_target(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "m.npz", X=rng.normal(size=(40, 3)), y=rng.normal(size=(40, 2)))
    ds = load_dataset(path=tmp_path / "m.npz")
    assert ds.task == "regression" and ds.n_targets == 2 and ds.y_mean.shape == (2,)
    assert ds.feature_names == ("x0", "x1", "x2")
    _check_arrays(ds)


def test_npz_images_are_flattened(tmp_path: Path) -> None:
    x = np.zeros((20, 4, 5), dtype=np.uint8)
    np.savez(tmp_path / "img.npz", x=x, y=np.arange(20) % 4)
    ds = load_dataset(path=tmp_path / "img.npz")
    assert ds.image_shape == (4, 5, 1) and ds.n_features == 20
    assert ds.task == "classification" and ds.num_classes == 4


# --- task inference ---------------------------------------------------------------------


def _csv(tmp_path: Path, y: object, name: str = "t.csv", n: int = 40) -> Path:
    path = tmp_path / name
    pd.DataFrame({"a": np.arange(n, dtype=float), "target": y}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("y", "task"),
    [
        (np.arange(40) % 20, "classification"),  # 20 unique ints
        (np.arange(40) % 21, "regression"),  # 21 unique ints
        (np.arange(40) % 2 == 0, "classification"),  # bool
        (["a", "b"] * 20, "classification"),  # strings
        ((np.arange(40) % 2).astype(float), "regression"),  # floats, even if integral
        (np.linspace(0, 1, 40), "regression"),
    ],
)
def test_task_inference(tmp_path: Path, y: object, task: str) -> None:
    assert load_dataset(path=_csv(tmp_path, y)).task == task


def test_explicit_task_overrides_inference(tmp_path: Path) -> None:
    many_ints = _csv(tmp_path, np.arange(40) % 25)
    ds = load_dataset(path=many_ints, task="classification")
    assert ds.num_classes == 25
    integral_floats = _csv(tmp_path, (np.arange(40) % 3) * 2.0, name="f.csv")
    ds = load_dataset(path=integral_floats, task="classification")
    assert ds.class_names == ("0", "2", "4")
    few_ints = _csv(tmp_path, np.arange(40) % 3, name="r.csv")
    ds = load_dataset(path=few_ints, task="regression")
    assert ds.task == "regression" and ds.y_train.dtype == np.float32


# --- errors -----------------------------------------------------------------------------


def _raises(field: str, match: str | None = None, **kwargs: object) -> DataError:
    with pytest.raises(DataError, match=match) as info:
        load_dataset(**kwargs)
    err = info.value
    assert err.field == field and str(err).startswith(f"{field}: ")
    return err


def test_data_error_is_value_error_and_pickles() -> None:
    err = DataError("data.path", "file not found: x")
    assert isinstance(err, ValueError)
    back = pickle.loads(pickle.dumps(err))
    assert back.field == "data.path" and str(back) == str(err)


def test_error_name_and_path_both_or_neither(tmp_path: Path) -> None:
    _raises("data", "exactly one")
    _raises("data", "exactly one", name="iris", path=tmp_path / "a.csv")


def test_error_unknown_name() -> None:
    err = _raises("data.name", "unknown dataset 'foo'", name="foo")
    assert "digits, iris, wine" in str(err)


def test_error_missing_file(tmp_path: Path) -> None:
    _raises("data.path", "file not found", path=tmp_path / "nope.csv")
    _raises("data.path", "file not found", path="nope.parquet", base_dir=tmp_path)


def test_error_directory_is_not_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "x.csv").mkdir()
    err = _raises("data.path", "is a directory, not a .csv file", path=tmp_path / "x.csv")
    assert "not found" not in str(err)


def test_error_header_only_csv_has_no_rows(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("f0,f1,target\n")
    err = _raises("data.path", "has no rows", path=tmp_path / "h.csv")
    assert "only a header: f0, f1, target" in str(err) and "non-numeric" not in str(err)
    pd.DataFrame({"f0": [], "target": []}).to_parquet(tmp_path / "h.parquet")
    _raises("data.path", "h.parquet has no rows", path=tmp_path / "h.parquet")


def test_error_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_bytes(b"")
    _raises("data.path", r"e.csv is empty \(0 bytes\)", path=tmp_path / "e.csv")


def test_error_unsupported_extension(tmp_path: Path) -> None:
    (tmp_path / "d.txt").write_text("a,b\n1,2\n")
    _raises("data.path", "unsupported", path=tmp_path / "d.txt")


def test_error_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_text("not parquet")
    _raises("data.path", "could not read", path=tmp_path / "bad.parquet")
    (tmp_path / "bad.npz").write_text("not npz")
    _raises("data.path", "could not read", path=tmp_path / "bad.npz")


def test_error_no_default_target(tmp_path: Path) -> None:
    pd.DataFrame({"a": range(20), "b": range(20)}).to_csv(tmp_path / "d.csv", index=False)
    err = _raises("data.target", "columns are: a, b", path=tmp_path / "d.csv")
    assert "'target' or 'y'" in str(err)


def test_error_missing_target_column(tmp_path: Path) -> None:
    path = _csv(tmp_path, [0, 1] * 20)
    _raises("data.target", "column 'x' not found; columns are: a, target", path=path, target="x")


def test_error_target_with_builtin() -> None:
    _raises("data.target", "only used with data.path", name="iris", target="y")


def test_error_non_numeric_feature(tmp_path: Path) -> None:
    df = pd.DataFrame({"a": range(20), "c": ["u", "v"] * 10, "target": [0, 1] * 10})
    df.to_csv(tmp_path / "d.csv", index=False)
    _raises("data.path", "non-numeric values in column 'c'", path=tmp_path / "d.csv")


def test_error_non_finite_feature(tmp_path: Path) -> None:
    a = np.arange(20.0)
    a[[3, 7]] = np.nan
    a[9] = np.inf
    pd.DataFrame({"a": a, "target": [0, 1] * 10}).to_parquet(tmp_path / "d.parquet")
    _raises("data.path", "column 'a' has 3 ", path=tmp_path / "d.parquet")


def test_error_non_finite_target(tmp_path: Path) -> None:
    y = np.linspace(0, 1, 40)
    y[5] = np.nan
    _raises("data.target", "column 'target' has 1 ", path=_csv(tmp_path, y))
    labels = np.array(["a", "b"] * 20, dtype=object)
    labels[[1, 2]] = None
    _raises("data.target", "column 'target' has 2 ", path=_csv(tmp_path, labels, "s.csv"))


def test_error_too_few_rows(tmp_path: Path) -> None:
    _raises("data", "too few rows", path=_csv(tmp_path, [0, 1] * 4, n=8))
    # 10 rows but 10% validation is a single row.
    path = _csv(tmp_path, [0, 1] * 5, name="ten.csv", n=10)
    _raises("data", "too few rows", path=path, val_fraction=0.1)
    assert load_dataset(path=path, val_fraction=0.2).n_val == 2
    _raises("data", "too few rows", path=path, val_fraction=0.95)  # nothing left to train


def test_error_single_class(tmp_path: Path) -> None:
    _raises("data.target", "at least 2 classes", path=_csv(tmp_path, ["a"] * 40))


@pytest.mark.parametrize("val_fraction", [-0.1, 1.0, 1.5, float("nan")])
def test_error_val_fraction(val_fraction: float) -> None:
    _raises("data.val_fraction", "must be in", name="iris", val_fraction=val_fraction)


def test_error_task(tmp_path: Path) -> None:
    _raises("data.task", "unknown task 'clustering'", name="iris", task="clustering")
    _raises("data.task", "is a classification dataset", name="iris", task="regression")
    path = _csv(tmp_path, np.linspace(0, 1, 40))
    _raises("data.task", "fractional", path=path, task="classification")
    strings = _csv(tmp_path, ["a", "b"] * 20, name="s.csv")
    _raises("data.task", "numeric target", path=strings, task="regression")


def test_error_npz_arrays(tmp_path: Path) -> None:
    np.savez(tmp_path / "nox.npz", features=np.zeros((20, 2)), y=np.zeros(20))
    _raises("data.path", "no array 'x'", path=tmp_path / "nox.npz")
    np.savez(tmp_path / "noy.npz", x=np.zeros((20, 2)), labels=np.zeros(20))
    _raises("data.target", "array 'y' not found", path=tmp_path / "noy.npz")
    np.savez(tmp_path / "len.npz", x=np.zeros((20, 2)), y=np.zeros(19))
    _raises("data.path", "do not match", path=tmp_path / "len.npz")
    np.savez(tmp_path / "str.npz", x=np.array([["a"]] * 20), y=np.arange(20) % 2)
    _raises("data.path", "non-numeric values in array 'x'", path=tmp_path / "str.npz")
    x = np.zeros((20, 2))
    x[0, 1] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=np.arange(20) % 2)
    _raises("data.path", "array 'x' has 1 NaN/inf", path=tmp_path / "nan.npz")


def test_digits_read_from_the_shipped_file_equals_sklearns_loader():
    from sklearn.datasets import load_digits

    from sweeps.core.data_sources import read_builtin

    ref, raw = load_digits(), read_builtin("digits")
    assert np.array_equal(raw.x, ref.data) and raw.x.dtype == ref.data.dtype
    assert np.array_equal(raw.y, ref.target) and raw.y.dtype == ref.target.dtype
    assert raw.feature_names == tuple(ref.feature_names)
    assert raw.class_names == tuple(str(c) for c in ref.target_names)
