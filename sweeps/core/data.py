"""Dataset loading for sweeps: built-in datasets or the user's own, split and standardized.

`load_dataset` turns a data spec into a `Dataset` of numpy arrays ready to be put on an
accelerator: it checks the spec's fields, reads the rows (sweeps/core/data_sources.py), splits
and standardizes them. The sources: a built-in name (tables shipped with scikit-learn, synthetic sets,
and `pydoc_topics`, text that ships with Python); a .csv/.parquet table plus target column;
an .npz whose arrays keep their shape and dtype (images (N, H, W, C), integer tokens (N, T),
multi-output targets), with x/y or x_train/y_train/x_val/y_val; a text file cut into
character-level next-token windows; the arrays a user's loader function returns; or arrays
handed over from Python. Float inputs are standardized per input element (training
statistics only); integer inputs (token ids, class codes) never are.
Every problem with the input is raised as a `DataError` naming the spec field at fault, so
the CLI and the service can point the user at the right line of their config.

This module deliberately does not import JAX: it runs in processes (API server, CLI
validation) that never train. pandas (a second or more) is imported when a table is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sweeps.core.data_sources import (
    BUILTIN_DATASETS,
    MIN_ROWS,
    MIN_SPLIT_ROWS,
    SIZED_DATASETS,
    TASKS,
    TEXT_DATASETS,
    DataError,
    Task,
    as_dtype,
    builtin_text,
    read_arrays,
    read_builtin,
    read_file,
    read_text,
    text_windows,
)

__all__ = ["BUILTIN_DATASETS", "SIZED_DATASETS", "TEXT_DATASETS", "DataError", "Dataset", "Task",
           "load_dataset"]  # fmt: skip


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
    vocabulary: tuple[str, ...] | None = None  # a text dataset's characters, by token id

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's shape: (64,) for digits, (H, W, C) for images, (T,) for tokens."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def n_features(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def vocab_size(self) -> int | None:
        """Token ids run 0..vocab_size-1: a text dataset's vocabulary, or integer inputs'."""
        if self.vocabulary is not None:
            return len(self.vocabulary)
        if self.x_train.dtype.kind in "iu" and self.x_train.size:
            return int(max(self.x_train.max(), self.x_val.max())) + 1
        return None

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_val(self) -> int:
        return int(self.x_val.shape[0])

    @property
    def n_targets(self) -> int:
        """Outputs per example of a regression (its target's size); 1 for classification."""
        return 1 if self.task == "classification" else int(np.prod(self.y_train.shape[1:]))


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
    text: str | Path | None = None,
    block_size: int = 64,
    arrays: Mapping[str, Any] | None = None,
    n_samples: int | None = None,
) -> Dataset:
    """Load a dataset from exactly one source, split it and optionally standardize.

    `name` a built-in; `path` a table or .npz file; `text` a text file (character-level
    next-token windows of `block_size`); `arrays` the arrays themselves (x/y or
    x_train/y_train/x_val/y_val, from a loader function or the Python API); `n_samples` the
    rows a synthetic built-in draws (`SIZED_DATASETS`)."""
    given = [k for k, v in (("name", name), ("path", path), ("text", text), ("import", arrays))
             if v is not None]  # fmt: skip
    if len(given) != 1:
        raise DataError("data", "give exactly one of data.name, data.path, data.text, data.import")
    if task is not None and task not in TASKS:
        raise DataError("data.task", f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    if not 0.0 <= val_fraction < 1.0:
        raise DataError("data.val_fraction", f"must be in [0, 1), got {val_fraction}")

    if name is not None:
        if target is not None:
            raise DataError("data.target", "only used with data.path, not builtin datasets")
        raw = (
            text_windows(builtin_text(name), name, block_size, val_fraction, "data.name")
            if name in TEXT_DATASETS
            else read_builtin(name, n_samples)
        )
        if task is not None and task != raw.task:
            raise DataError("data.task", f"dataset {name!r} is a {raw.task} dataset, not {task}")
    elif text is not None:
        raw = read_text(Path(text), base_dir, block_size, val_fraction)
    elif arrays is not None:
        raw = read_arrays(dict(arrays), "data.import", "import", target, task)
    else:
        raw = read_file(Path(path), target, task, base_dir)

    if raw.val is not None:  # the source split it: train is everything else
        x_train, y_train = raw.x, raw.y
        x_val, y_val = raw.val
        split = True
    else:
        train_idx, val_idx = _split(len(raw.x), val_fraction, seed)
        x_train, y_train = raw.x[train_idx], raw.y[train_idx]
        split = val_idx is not None
        x_val, y_val = (raw.x[val_idx], raw.y[val_idx]) if split else (x_train, y_train)

    classification = raw.task == "classification"
    y_mean = y_std = None
    # Integer inputs are ids or codes, never standardized; float inputs per input element.
    if standardize and x_train.dtype.kind == "f":
        _, _, x_train, x_val = _standardize(x_train, x_val)
    if standardize and not classification:
        y_mean, y_std, y_train, y_val = _standardize(y_train, y_val)

    x_dtype = np.int32 if x_train.dtype.kind in "iub" else np.float32
    y_dtype = np.int32 if classification else np.float32
    x_train, y_train = as_dtype(x_train, x_dtype), as_dtype(y_train, y_dtype)
    if not split:  # documented: no split -> the val arrays *are* the train arrays
        x_val, y_val = x_train, y_train
    else:
        x_val, y_val = as_dtype(x_val, x_dtype), as_dtype(y_val, y_dtype)
    num_classes = None
    if classification:
        num_classes = raw.num_classes or len(raw.class_names or ())
    return Dataset(
        name=raw.name,
        task=raw.task,
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        num_classes=num_classes,
        feature_names=raw.feature_names,
        class_names=raw.class_names if classification else None,
        image_shape=raw.image_shape,
        y_mean=None if y_mean is None else as_dtype(y_mean, np.float32),
        y_std=None if y_std is None else as_dtype(y_std, np.float32),
        vocabulary=raw.vocabulary,
    )


def _split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Seeded shuffle; validation = the first round(val_fraction * n) rows of the permutation.

    Returns (train_idx, val_idx); val_idx is None when val_fraction == 0 (validate on train).
    """
    if n < MIN_ROWS:
        raise DataError("data", f"too few rows: {n} (need at least {MIN_ROWS})")
    n_val = round(val_fraction * n)
    if val_fraction > 0 and n_val < MIN_SPLIT_ROWS:
        raise DataError(
            "data",
            f"too few rows for validation: val_fraction={val_fraction} of {n} rows gives "
            f"{n_val} (need at least {MIN_SPLIT_ROWS})",
        )
    if n - n_val < MIN_SPLIT_ROWS:
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
