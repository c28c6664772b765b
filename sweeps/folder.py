"""The sweep folder: every file a sweep writes, by name, and the one atomic JSON write.

A sweep's driver writes here and everyone else (`resume`, the service, a user) reads it:

    DIR/spec.json          the validated spec (resume reads it)
    DIR/sweep.json         id, status (running | succeeded | failed | interrupted), error, mlflow
    DIR/progress.json      lane-steps done of total, trials (rewritten as the sweep goes)
    DIR/plan.json          the populations an adaptive searcher (tpe) proposed, and their scores
    DIR/mlflow_state.json  lane -> MLflow run id map, so retries and resumes reuse runs
    DIR/points.jsonl       every eval point received (Ray executor), for resume
    DIR/programs.pkl       programs compiled by the driver for local Ray trials
    DIR/ray/               Ray Tune's experiment state and trial checkpoints
    DIR/report.json, DIR/verdict.md, DIR/plots/*.png
    DIR/submitted.json, DIR/driver.log   (service sweeps) the spec as submitted, the driver's output

Light on purpose (no JAX, no MLflow): the service and the CLI read folders with it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from sweeps.errors import FolderError

SPEC = "spec.json"
STATE = "sweep.json"
PROGRESS = "progress.json"
PLAN = "plan.json"
MLFLOW_STATE = "mlflow_state.json"
POINTS = "points.jsonl"
PROGRAMS = "programs.pkl"
RAY = "ray"
REPORT = "report.json"
VERDICT = "verdict.md"
PLOTS = "plots"
VOCABULARY = "vocabulary.json"  # a text dataset's characters by token id
SUBMITTED = "submitted.json"
DRIVER_LOG = "driver.log"


def write_json_atomic(path: Path, value: Any, *, strict: bool = False) -> None:
    """tmp file + os.replace: readers (the service, `resume`) never see half a file. The tmp
    name is per process and thread, so two writers never share one. `strict` refuses NaN and
    infinities (not JSON: other readers choke on them)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    text = json.dumps(value, indent=1, allow_nan=not strict)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        # a full disk leaves half a tmp file: never leave it behind (the old file stays whole)
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file, or None if it is missing or unreadable (mid-write elsewhere)."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_object(path: Path) -> dict[str, Any]:
    """A JSON object file; a FolderError naming the file and what is wrong with it (missing,
    unreadable, truncated or garbage, not an object)."""
    path = Path(path)
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise FolderError(f"{path.name} is missing") from None
    except OSError as err:
        raise FolderError(f"{path.name} cannot be read ({err.strerror or err})") from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise FolderError(f"{path.name} is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise FolderError(f"{path.name} is not a JSON object (it holds {type(value).__name__})")
    return value


class SweepFolder:
    """One sweep's folder and its small state files."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def has_run(self) -> bool:
        """True once a driver got as far as writing its spec and state: it can be resumed."""
        return (self.path / STATE).exists() and (self.path / SPEC).exists()

    def read(self, name: str) -> dict:
        """One of the folder's JSON files; FolderError if it is missing or not a JSON object."""
        return read_object(self.path / name)

    def state(self) -> dict:
        return self.read(STATE)

    def set_state(self, **changes: Any) -> None:
        current = self.state() if (self.path / STATE).exists() else {}
        write_json_atomic(self.path / STATE, {**current, **changes, "updated_at": time.time()})

    def write_progress(self, progress: dict) -> None:
        write_json_atomic(self.path / PROGRESS, {**progress, "updated_at": time.time()})
