"""Dataset loading for sweeps: builtin toy datasets or user files, split and standardized.

`load_dataset` turns a data spec (a builtin name, or a .csv/.npz/.parquet path plus target
column) into a `Dataset` of float32/int32 numpy arrays ready to be put on an accelerator.
Every problem with the input is raised as a `DataError` naming the spec field at fault, so
the CLI and the service can point the user at the right line of their config.

This module deliberately does not import JAX: it runs in processes (API server, CLI
validation) that never train. pandas (a second or more) is imported when a table is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

BUILTIN_DATASETS: tuple[str, ...] = (
    "digits",
    "iris",
    "wine",
    "breast_cancer",
    "diabetes",
    "moons",
    "linear",
)

Task = Literal["classification", "regression"]
_TASKS: tuple[str, ...] = ("classification", "regression")
_REGRESSION_BUILTINS = frozenset({"diabetes", "linear"})
_FILE_SUFFIXES = (".csv", ".npz", ".parquet")
_MAX_INFERRED_CLASSES = 20  # integer targets with more unique values are treated as regression
_MIN_ROWS = 10
_MIN_SPLIT_ROWS = 2


class DataError(ValueError):
    """Bad data input. `field` is the spec field at fault, e.g. "data.path", "data.target"."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self):
        # The default exception pickling would call DataError(str(self)); Ray pickles errors.
        return (type(self), (self.field, self.message))


@dataclass(frozen=True, eq=False)  # eq=False: comparing/hashing numpy fields would raise
class Dataset:
    name: str
    task: Task
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    num_classes: int | None
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...] | None
    image_shape: tuple[int, int, int] | None
    y_mean: np.ndarray | None
    y_std: np.ndarray | None

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_val(self) -> int:
        return int(self.x_val.shape[0])

    @property
    def n_targets(self) -> int:
        return 1 if self.task == "classification" else int(self.y_train.shape[1])


@dataclass(frozen=True)
class _Raw:
    """A loaded dataset before splitting: x float64 (n, f); y int labels (n,) or float (n, t)."""

    name: str
    task: Task
    x: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...] | None = None
    image_shape: tuple[int, int, int] | None = None


def load_dataset(
    *,
    name: str | None = None,
    path: str | Path | None = None,
    target: str | None = None,
    task: str | None = None,
    val_fraction: float = 0.2,
    standardize: bool = True,
    seed: int = 0,
    base_dir: Path | None = None,
) -> Dataset:
    """Load a builtin (`name`) or file (`path`) dataset, split it and optionally standardize."""
    if (name is None) == (path is None):
        raise DataError("data", "give exactly one of data.name or data.path")
    if task is not None and task not in _TASKS:
        raise DataError("data.task", f"unknown task {task!r}; choose one of: {', '.join(_TASKS)}")
    if not 0.0 <= val_fraction < 1.0:
        raise DataError("data.val_fraction", f"must be in [0, 1), got {val_fraction}")

    if name is not None:
        if target is not None:
            raise DataError("data.target", "only used with data.path, not builtin datasets")
        raw = _load_builtin(name)
        if task is not None and task != raw.task:
            raise DataError("data.task", f"dataset {name!r} is a {raw.task} dataset, not {task}")
    else:
        raw = _load_file(Path(path), target, task, base_dir)

    train_idx, val_idx = _split(len(raw.x), val_fraction, seed)
    x_train, y_train = raw.x[train_idx], raw.y[train_idx]
    x_val, y_val = (raw.x[val_idx], raw.y[val_idx]) if val_idx is not None else (x_train, y_train)

    classification = raw.task == "classification"
    y_mean = y_std = None
    if standardize:
        _, _, x_train, x_val = _standardize(x_train, x_val)
        if not classification:
            y_mean, y_std, y_train, y_val = _standardize(y_train, y_val)

    y_dtype = np.int32 if classification else np.float32
    x_train, y_train = _as(x_train, np.float32), _as(y_train, y_dtype)
    if val_idx is None:  # documented: no split -> the val arrays *are* the train arrays
        x_val, y_val = x_train, y_train
    else:
        x_val, y_val = _as(x_val, np.float32), _as(y_val, y_dtype)
    return Dataset(
        name=raw.name,
        task=raw.task,
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        num_classes=len(raw.class_names) if classification else None,
        feature_names=raw.feature_names,
        class_names=raw.class_names if classification else None,
        image_shape=raw.image_shape,
        y_mean=None if y_mean is None else _as(y_mean, np.float32),
        y_std=None if y_std is None else _as(y_std, np.float32),
    )


def _as(a: np.ndarray, dtype: type[np.generic]) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=dtype)


def _load_builtin(name: str) -> _Raw:
    if name not in BUILTIN_DATASETS:
        raise DataError(
            "data.name", f"unknown dataset {name!r}; choose one of: {', '.join(BUILTIN_DATASETS)}"
        )
    # Imported lazily: sklearn.datasets takes seconds to import and file datasets don't need it.
    from sklearn import datasets

    if name == "moons":
        # Fixed random_state: the data must not change with the sweep seed, only the split.
        x, y = datasets.make_moons(n_samples=1000, noise=0.2, random_state=0)
        return _Raw(name, "classification", x, y, ("x0", "x1"), ("0", "1"))
    if name == "linear":
        rng = np.random.default_rng(0)
        x = rng.standard_normal((1000, 8))
        w, b = rng.standard_normal(8), rng.standard_normal()
        y = x @ w + b + 0.1 * rng.standard_normal(1000)
        return _Raw(name, "regression", x, y[:, None], tuple(f"x{i}" for i in range(8)))

    loader = {
        "digits": datasets.load_digits,
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
        "diabetes": lambda: datasets.load_diabetes(scaled=False),  # raw units; we standardize
    }[name]
    bunch = loader()
    features = tuple(str(f) for f in bunch.feature_names)
    if name in _REGRESSION_BUILTINS:
        return _Raw(name, "regression", bunch.data, bunch.target[:, None], features)
    # sklearn's classification targets are already 0..k-1 in target_names order.
    classes = tuple(str(c) for c in bunch.target_names)
    image_shape = (8, 8, 1) if name == "digits" else None
    return _Raw(name, "classification", bunch.data, bunch.target, features, classes, image_shape)


def _load_file(path: Path, target: str | None, task: str | None, base_dir: Path | None) -> _Raw:
    path = path.expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    suffix = path.suffix.lower()
    if suffix not in _FILE_SUFFIXES:
        raise DataError(
            "data.path",
            f"unsupported file type {path.suffix or '(none)'!r}; use one of: "
            + ", ".join(_FILE_SUFFIXES),
        )
    if path.is_dir():
        raise DataError("data.path", f"{path} is a directory, not a {suffix} file")
    if not path.exists():
        raise DataError("data.path", f"file not found: {path}")
    if not path.is_file():
        raise DataError("data.path", f"{path} is not a regular file")
    if path.stat().st_size == 0:
        raise DataError("data.path", f"{path} is empty (0 bytes)")

    if suffix == ".npz":
        x, y, features, image_shape, target_name = _read_npz(path, target)
    else:
        x, y, features, target_name = _read_table(path, suffix, target)
        image_shape = None
    resolved, y, classes = _prepare_target(y, target_name, task)
    return _Raw(path.stem, resolved, x, y, features, classes, image_shape)


def _read_table(
    path: Path, suffix: str, target: str | None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    import pandas as pd

    try:
        df = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except Exception as e:  # parser errors come in many types; all mean "unreadable file"
        raise DataError("data.path", f"could not read {path}: {e}") from e
    df.columns = [str(c) for c in df.columns]
    columns = list(df.columns)
    if len(df) == 0:  # else every column reads as non-numeric (an empty object column)
        header = f" (only a header: {', '.join(columns)})" if columns else ""
        raise DataError("data.path", f"{path} has no rows{header}")
    if target is None:
        target = next((c for c in ("target", "y") if c in columns), None)
        if target is None:
            raise DataError(
                "data.target",
                f"no target given and no column named 'target' or 'y'; columns are: "
                f"{', '.join(columns)}",
            )
    if target not in columns:
        raise DataError(
            "data.target", f"column {target!r} not found; columns are: {', '.join(columns)}"
        )
    features = [c for c in columns if c != target]
    if not features:
        raise DataError("data.path", f"no feature columns besides target {target!r}")
    for c in features:
        if not pd.api.types.is_numeric_dtype(df[c]):
            raise DataError("data.path", f"non-numeric values in column {c!r}")
    x = df[features].to_numpy(dtype=np.float64, na_value=np.nan)
    _check_finite(x, features)
    return x, df[target].to_numpy(), tuple(features), target


def _read_npz(
    path: Path, target: str | None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[int, int, int] | None, str]:
    try:
        with np.load(path, allow_pickle=False) as npz:  # no pickle: never run code from data
            arrays = {k: npz[k] for k in npz.files}
    except Exception as e:
        raise DataError("data.path", f"could not read {path}: {e}") from e
    x_key = next((k for k in ("x", "X") if k in arrays), None)
    if x_key is None:
        raise DataError("data.path", f"no array 'x' or 'X'; arrays are: {', '.join(arrays)}")
    y_key = target or "y"  # `target` may name the label array, like a column for tables
    if y_key not in arrays:
        raise DataError(
            "data.target", f"array {y_key!r} not found; arrays are: {', '.join(arrays)}"
        )
    x, y = arrays[x_key], arrays[y_key]
    if x.dtype.kind not in "iufb":
        raise DataError("data.path", f"non-numeric values in array {x_key!r}")
    if x.ndim == 0 or y.ndim == 0 or y.ndim > 2 or len(x) != len(y):
        raise DataError(
            "data.path", f"shapes of {x_key!r} {x.shape} and {y_key!r} {y.shape} do not match"
        )
    # (n, H, W) or (n, H, W, C) arrays are images: flatten rows, remember the shape for CNNs.
    image_shape = None
    if x.ndim in (3, 4):
        image_shape = tuple(x.shape[1:]) + ((1,) if x.ndim == 3 else ())
    x = x.reshape(len(x), -1).astype(np.float64)
    features = tuple(f"x{i}" for i in range(x.shape[1]))
    _check_finite(x, features)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    return x, y, features, image_shape, y_key


def _check_finite(x: np.ndarray, features: list[str] | tuple[str, ...]) -> None:
    bad = (~np.isfinite(x)).sum(axis=0)
    for c, n_bad in zip(features, bad, strict=True):
        if n_bad:
            raise DataError("data.path", f"column {c!r} has {n_bad} missing/NaN/inf values")


def _prepare_target(
    y: np.ndarray, column: str, task: str | None
) -> tuple[Task, np.ndarray, tuple[str, ...] | None]:
    """Resolve the task and encode y: int labels 0..k-1 (+ class names), or float (n, t)."""
    import pandas as pd

    kind = y.dtype.kind
    missing = ~np.isfinite(y) if kind in "fc" else (pd.isna(y) if kind == "O" else np.zeros(0))
    if n_bad := int(np.sum(missing)):
        raise DataError("data.target", f"column {column!r} has {n_bad} missing/NaN/inf values")

    if task is None:
        few_ints = kind in "iu" and y.ndim == 1 and len(np.unique(y)) <= _MAX_INFERRED_CLASSES
        task = "classification" if kind not in "iuf" or few_ints else "regression"

    if task == "regression":
        if kind not in "iufb":
            raise DataError("data.task", f"regression needs a numeric target; {column!r} is not")
        y = y.astype(np.float64)
        return "regression", y.reshape(len(y), -1), None

    if y.ndim != 1:
        raise DataError("data.target", f"classification needs one label per row; {column!r} is 2-D")
    if kind == "f":
        if not np.all(y == np.round(y)):
            raise DataError(
                "data.task",
                f"classification needs integer or string labels; {column!r} has fractional values",
            )
        y = y.astype(np.int64)  # so class names read "3", not "3.0"
    elif kind in "OS":
        y = y.astype(str)  # mixed objects don't sort; their string forms do
    classes, labels = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise DataError(
            "data.target", f"classification needs at least 2 classes; {column!r} has {len(classes)}"
        )
    return "classification", labels, tuple(str(c) for c in classes)


def _split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Seeded shuffle; validation = the first round(val_fraction * n) rows of the permutation.

    Returns (train_idx, val_idx); val_idx is None when val_fraction == 0 (validate on train).
    """
    if n < _MIN_ROWS:
        raise DataError("data", f"too few rows: {n} (need at least {_MIN_ROWS})")
    n_val = round(val_fraction * n)
    if val_fraction > 0 and n_val < _MIN_SPLIT_ROWS:
        raise DataError(
            "data",
            f"too few rows for validation: val_fraction={val_fraction} of {n} rows gives "
            f"{n_val} (need at least {_MIN_SPLIT_ROWS})",
        )
    if n - n_val < _MIN_SPLIT_ROWS:
        raise DataError(
            "data", f"too few rows left for training: {n - n_val} of {n} (lower val_fraction)"
        )
    perm = np.random.default_rng(seed).permutation(n)
    return perm[n_val:], (perm[:n_val] if n_val else None)


def _standardize(
    train: np.ndarray, other: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Scale columns by TRAINING mean/std only, so nothing about validation leaks into training.

    Returns (mean, std, train_scaled, other_scaled).
    """
    mean, std = train.mean(axis=0), train.std(axis=0)
    # Constant columns: std is 0 (or round-off close to it), so map them to exactly 0 instead.
    constant = train.max(axis=0) == train.min(axis=0)
    mean = np.where(constant, train[0], mean)
    std = np.where(constant, 1.0, std)
    return mean, std, (train - mean) / std, (other - mean) / std
