"""Where a dataset's rows come from: a built-in (scikit-learn's tables, synthetic sets, Python's
help text), a table or .npz file, a text file cut into next-token windows, or arrays handed over
(a loader function, the Python API). Each reader returns the rows as `Raw`, unsplit unless the
source split them; every problem is a `DataError` naming the spec field at fault.
`sweeps/core/data.py` splits and standardizes them into a `Dataset`.

No JAX here (the API server and CLI validation read data without it); pandas is imported when a
table is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

TEXT_DATASETS: tuple[str, ...] = ("pydoc_topics",)  # Python's own help topics (pydoc_data)
BUILTIN_DATASETS: tuple[str, ...] = (
    "digits",
    "iris",
    "wine",
    "breast_cancer",
    "diabetes",
    "moons",
    "linear",
    *TEXT_DATASETS,
    "teacher",  # a fixed random teacher network's labels, n_samples rows (sweeps/core/synthetic.py)
)
SIZED_DATASETS: tuple[str, ...] = ("teacher",)  # built-ins drawn as large as data.n_samples asks
Task = Literal["classification", "regression"]
TASKS: tuple[str, ...] = ("classification", "regression")
_REGRESSION_BUILTINS = frozenset({"diabetes", "linear"})
_FILE_SUFFIXES = (".csv", ".npz", ".parquet")
_MAX_INFERRED_CLASSES = 20  # integer targets with more unique values are treated as regression
MIN_ROWS = 10
MIN_SPLIT_ROWS = 2


class DataError(ValueError):
    """Bad data input. `field` is the spec field at fault, e.g. "data.path", "data.target"."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self):
        # The default exception pickling would call DataError(str(self)); Ray pickles errors.
        return (type(self), (self.field, self.message))


@dataclass(frozen=True)
class Raw:
    """A loaded dataset before splitting: x (n, ...) float64 or integer; y int labels (n,) or
    (n, T) token ids, or float targets (n, ...). `val` holds a split the source made itself."""

    name: str
    task: Task
    x: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...] | None = None
    image_shape: tuple[int, int, int] | None = None
    val: tuple[np.ndarray, np.ndarray] | None = None
    vocabulary: tuple[str, ...] | None = None
    num_classes: int | None = None  # token ids: the vocabulary's size, not the labels seen


# --------------------------------------------------------------------------- text
_MIN_WINDOWS = 4


def builtin_text(name: str) -> str:
    """Python's help topics (about 800 kB of English and code), read where Python keeps them."""
    from pydoc_data import topics

    return "\n\n".join(topics.topics[k] for k in sorted(topics.topics))


def read_text(path: Path, base_dir: Path | None, block_size: int, val_fraction: float) -> Raw:
    path = path.expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if path.is_dir():
        raise DataError("data.text", f"{path} is a directory, not a text file")
    if not path.is_file():
        raise DataError("data.text", f"file not found: {path}")
    data = path.read_bytes()
    if b"\x00" in data:
        raise DataError("data.text", f"{path} is a binary file, not text")
    try:
        corpus = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError("data.text", f"{path} is not UTF-8 text (byte {err.start})") from None
    return text_windows(corpus, path.stem, block_size, val_fraction, "data.text")


def text_windows(corpus: str, name: str, block: int, val_fraction: float, field: str) -> Raw:
    """Character-level next-token windows: x = characters [i, i+T), y = [i+1, i+T+1), one
    window every T characters. Validation is the corpus's tail (a held-out stretch of text,
    so no window overlaps one it is scored against)."""
    if block < 1:
        raise DataError("data.block_size", f"must be >= 1, got {block}")
    vocabulary = tuple(sorted(set(corpus)))
    lookup = {c: i for i, c in enumerate(vocabulary)}
    ids = np.fromiter((lookup[c] for c in corpus), dtype=np.int32, count=len(corpus))
    n = (len(ids) - 1) // block
    if n < _MIN_WINDOWS:
        raise DataError(
            field,
            f"the text has {len(ids)} characters: too short for windows of block_size {block} "
            f"(need at least {_MIN_WINDOWS * block + 1})",
        )
    starts = np.arange(n) * block
    x = ids[starts[:, None] + np.arange(block)]
    y = ids[starts[:, None] + np.arange(1, block + 1)]
    n_val = round(val_fraction * n)
    if val_fraction > 0 and (n_val < 1 or n - n_val < 1):
        raise DataError("data.val_fraction", f"{val_fraction} of {n} windows leaves a side empty")
    cut = n - n_val
    val = (x[cut:], y[cut:]) if n_val else None
    return Raw(
        name, "classification", x[:cut], y[:cut], tuple(f"t{i}" for i in range(block)),
        val=val, vocabulary=vocabulary, num_classes=len(vocabulary),
    )  # fmt: skip


# --------------------------------------------------------------------------- arrays
_SPLIT_KEYS = ("x_train", "y_train", "x_val", "y_val")


def read_arrays(
    arrays: dict[str, Any], field: str, name: str, target: str | None, task: str | None
) -> Raw:
    """x/y (split here) or x_train/y_train/x_val/y_val (split by the user), any shapes."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    if all(k in arrays for k in _SPLIT_KEYS):
        x, y = _check_pair(arrays["x_train"], arrays["y_train"], "x_train", "y_train", field)
        xv, yv = _check_pair(arrays["x_val"], arrays["y_val"], "x_val", "y_val", field)
        if x.shape[1:] != xv.shape[1:] or x.dtype.kind != xv.dtype.kind:
            raise DataError(
                field, f"x_val {xv.shape} {xv.dtype} does not match x_train {x.shape} {x.dtype}"
            )
        n = len(y)
        task_, labels, classes, num = _prepare_target(np.concatenate([y, yv]), "y", task)
        raw_y, raw_yv = labels[:n], labels[n:]
        image = _image_of(x)
        return Raw(name, task_, _inputs(x), raw_y, _feature_names(x), classes, image,
                    val=(_inputs(xv), raw_yv), num_classes=num)  # fmt: skip
    if any(k in arrays for k in _SPLIT_KEYS):
        missing = [k for k in _SPLIT_KEYS if k not in arrays]
        raise DataError(field, f"a split needs all of {', '.join(_SPLIT_KEYS)}; missing: "
                        f"{', '.join(missing)}")  # fmt: skip
    x_key = next((k for k in ("x", "X") if k in arrays), None)
    if x_key is None:
        raise DataError(field, f"no array 'x' or 'X'; arrays are: {', '.join(arrays) or 'none'}")
    y_key = target or "y"  # `target` may name the label array, like a column for tables
    if y_key not in arrays:
        raise DataError(
            "data.target", f"array {y_key!r} not found; arrays are: {', '.join(arrays)}"
        )
    x, y = _check_pair(arrays[x_key], arrays[y_key], x_key, y_key, field)
    task_, labels, classes, num = _prepare_target(y, y_key, task)
    return Raw(name, task_, _inputs(x), labels, _feature_names(x), classes, _image_of(x),
                num_classes=num)  # fmt: skip


def _check_pair(x: np.ndarray, y: np.ndarray, xk: str, yk: str, field: str):
    if x.dtype.kind not in "iufb":
        raise DataError(field, f"non-numeric values in array {xk!r} (dtype {x.dtype})")
    if y.dtype.kind not in "iufbUSO":
        raise DataError(field, f"array {yk!r} has unsupported dtype {y.dtype}")
    if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
        raise DataError(field, f"shapes of {xk!r} {x.shape} and {yk!r} {y.shape} do not match")
    if x.dtype.kind == "f" and (n_bad := int(np.sum(~np.isfinite(x)))):
        raise DataError(field, f"array {xk!r} has {n_bad} NaN/inf values")
    if len(x) < MIN_SPLIT_ROWS:
        raise DataError(field, f"array {xk!r} has {len(x)} rows (need at least {MIN_SPLIT_ROWS})")
    return x, y


def _inputs(x: np.ndarray) -> np.ndarray:
    """Inputs keep their shape; floats become float64 for standardizing, integers stay."""
    return x.astype(np.float64) if x.dtype.kind in "fb" else x


def _image_of(x: np.ndarray) -> tuple[int, int, int] | None:
    """(N, H, W) or (N, H, W, C) float arrays are images (what a CNN or ResNet needs)."""
    if x.ndim in (3, 4) and x.dtype.kind in "fu":
        return tuple(x.shape[1:]) + ((1,) if x.ndim == 3 else ())
    return None


def _feature_names(x: np.ndarray) -> tuple[str, ...]:
    return tuple(f"x{i}" for i in range(x.shape[1])) if x.ndim == 2 else ()


def as_dtype(a: np.ndarray, dtype: type[np.generic]) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=dtype)


def read_builtin(name: str, n_samples: int | None = None) -> Raw:
    if name not in BUILTIN_DATASETS:
        raise DataError(
            "data.name", f"unknown dataset {name!r}; choose one of: {', '.join(BUILTIN_DATASETS)}"
        )
    if n_samples is not None and name not in SIZED_DATASETS:
        raise DataError("data.n_samples", f"only for {', '.join(SIZED_DATASETS)}, not {name!r}")
    if name == "teacher":
        from sweeps.core.synthetic import TEACHER_SAMPLES, teacher_table

        x, y = teacher_table(n_samples or TEACHER_SAMPLES)
        classes = tuple(str(c) for c in range(int(y.max()) + 1))
        return Raw(name, "classification", x, y, tuple(f"x{i}" for i in range(x.shape[1])), classes)
    if name == "digits":  # the demo's and most tests' data: read without importing sklearn
        x, y = _digits_table()
        features = tuple(f"pixel_{r}_{c}" for r in range(8) for c in range(8))
        classes = tuple(str(c) for c in range(10))
        return Raw(name, "classification", x, y, features, classes, (8, 8, 1))
    # Imported lazily: sklearn.datasets takes seconds to import and file datasets don't need it.
    from sklearn import datasets

    if name == "moons":
        # Fixed random_state: the data must not change with the sweep seed, only the split.
        x, y = datasets.make_moons(n_samples=1000, noise=0.2, random_state=0)
        return Raw(name, "classification", x, y, ("x0", "x1"), ("0", "1"))
    if name == "linear":
        rng = np.random.default_rng(0)
        x = rng.standard_normal((1000, 8))
        w, b = rng.standard_normal(8), rng.standard_normal()
        y = x @ w + b + 0.1 * rng.standard_normal(1000)
        return Raw(name, "regression", x, y[:, None], tuple(f"x{i}" for i in range(8)))

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
        return Raw(name, "regression", bunch.data, bunch.target[:, None], features)
    # sklearn's classification targets are already 0..k-1 in target_names order.
    classes = tuple(str(c) for c in bunch.target_names)
    image_shape = (8, 8, 1) if name == "digits" else None
    return Raw(name, "classification", bunch.data, bunch.target, features, classes, image_shape)


def _digits_table() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits (what `load_digits` returns), read from the file the package ships:
    importing sklearn costs about a second and a half of every process's start."""
    import gzip
    from importlib.util import find_spec

    spec = find_spec("sklearn")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise DataError("data.name", "the digits dataset needs scikit-learn installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets/data/digits.csv.gz"
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    return table[:, :-1], table[:, -1].astype(int)


def read_file(path: Path, target: str | None, task: str | None, base_dir: Path | None) -> Raw:
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
        raw = read_arrays(_read_npz(path), "data.path", path.stem, target, task)
        return raw
    x, y, features, target_name = _read_table(path, suffix, target)
    resolved, y, classes, num = _prepare_target(y, target_name, task)
    return Raw(path.stem, resolved, x, y, features, classes, None, num_classes=num)


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


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:  # no pickle: never run code from data
            return {k: npz[k] for k in npz.files}
    except Exception as e:
        raise DataError("data.path", f"could not read {path}: {e}") from e


def _check_finite(x: np.ndarray, features: list[str] | tuple[str, ...]) -> None:
    bad = (~np.isfinite(x)).sum(axis=0)
    for c, n_bad in zip(features, bad, strict=True):
        if n_bad:
            raise DataError("data.path", f"column {c!r} has {n_bad} missing/NaN/inf values")


def _prepare_target(
    y: np.ndarray, column: str, task: str | None
) -> tuple[Task, np.ndarray, tuple[str, ...] | None, int | None]:
    """Resolve the task and encode y: (task, y, class names, number of classes).

    One label per row becomes ids 0..k-1 with class names; integer targets of more dimensions
    (next-token ids (n, T)) are kept as they are, with max + 1 classes; regression targets
    are float (n, t) or (n, ...)."""
    import pandas as pd

    kind = y.dtype.kind
    missing = ~np.isfinite(y) if kind in "fc" else (pd.isna(y) if kind == "O" else np.zeros(0))
    if n_bad := int(np.sum(missing)):
        raise DataError("data.target", f"column {column!r} has {n_bad} missing/NaN/inf values")

    if task is None:
        few_ints = kind in "iu" and y.ndim == 1 and len(np.unique(y)) <= _MAX_INFERRED_CLASSES
        tokens = kind in "iu" and y.ndim >= 2
        task = "classification" if kind not in "iuf" or few_ints or tokens else "regression"

    if task == "regression":
        if kind not in "iufb":
            raise DataError("data.task", f"regression needs a numeric target; {column!r} is not")
        y = y.astype(np.float64)
        return "regression", (y if y.ndim >= 2 else y[:, None]), None, None

    if y.ndim != 1:
        if kind not in "iu" or y.min() < 0:
            raise DataError(
                "data.target",
                f"classification with {y.ndim}-D targets needs non-negative integer ids; "
                f"{column!r} is {y.dtype}",
            )
        return "classification", y, None, int(y.max()) + 1
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
    return "classification", labels, tuple(str(c) for c in classes), len(classes)
