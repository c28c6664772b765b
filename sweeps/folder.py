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

import hashlib
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeps.errors import FolderError, SpecError

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

# What one sweep writes into its folder: a folder holding any of these belongs to that sweep.
# (submitted.json and driver.log come before the sweep, from the service that launches it.)
SWEEP_FILES = (STATE, SPEC, PROGRESS, PLAN, MLFLOW_STATE, POINTS, PROGRAMS, REPORT, VERDICT,
               VOCABULARY)  # fmt: skip
SWEEP_DIRS = (RAY, PLOTS)


def spec_fingerprint(spec_json: str) -> str:
    """The spec's identity in a folder (sweep.json `spec_hash`): sha256 of its JSON."""
    return hashlib.sha256(spec_json.encode()).hexdigest()[:16]


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


@dataclass
class TrackingState:
    """mlflow_state.json: where a sweep's MLflow runs are, so retries, resumes and the
    clean-up after a crash find them. Written by the tracker; read here, by everyone."""

    tracking_uri: str | None = None
    experiment_id: str | None = None
    parent_run_id: str | None = None
    runs: dict[int, str] = field(default_factory=dict)  # lane index -> child run id
    logged: dict[int, int] = field(default_factory=dict)  # lane index -> last step written

    @classmethod
    def read(cls, path: Path) -> TrackingState | None:
        """The file's state; None if there is none; FolderError naming it if it is damaged
        (its runs would be unknown, and carrying on would log the sweep twice)."""
        if not Path(path).exists():
            return None
        raw = read_object(path)
        try:
            return cls(
                raw.get("tracking_uri"),
                raw.get("experiment_id"),
                raw.get("parent_run_id"),
                {int(k): str(v) for k, v in (raw.get("runs") or {}).items()},
                {int(k): int(v) for k, v in (raw.get("logged") or {}).items()},
            )
        except (TypeError, ValueError, AttributeError) as err:
            raise FolderError(f"{Path(path).name} has a malformed runs map ({err})") from None

    def write(self, path: Path) -> None:
        write_json_atomic(
            path,
            {
                "tracking_uri": self.tracking_uri,
                "experiment_id": self.experiment_id,
                "parent_run_id": self.parent_run_id,
                "runs": {str(k): v for k, v in sorted(self.runs.items())},
                "logged": {str(k): v for k, v in sorted(self.logged.items())},
            },
        )

    def run_ids(self) -> list[str]:
        """Every run it lists: the lanes' and the parent."""
        return [*self.runs.values(), *([self.parent_run_id] if self.parent_run_id else [])]


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

    def holds_a_sweep(self) -> bool:
        return any((self.path / n).exists() for n in (*SWEEP_FILES, *SWEEP_DIRS))

    def claim(self, spec_json: str, sweep_id: str | None, *, overwrite: bool = False) -> None:
        """Make the folder this new sweep's, or refuse (SpecError naming `out`, nothing touched).

        A folder belongs to one sweep: a new sweep never writes into another's files or
        MLflow runs (they are matched by lane index). Allowed: an empty or new folder; the same
        sweep id starting again (the service relaunching a sweep that never got going);
        `overwrite`, which clears the old sweep's files and leaves its MLflow runs as they are
        (the new sweep makes its own)."""
        if not self.holds_a_sweep():
            return
        state = read_json(self.path / STATE) or {}
        owner = state.get("sweep_id")
        if sweep_id is not None and sweep_id in (owner, owner or self.path.name):
            return  # this very sweep (a service folder is named by its sweep id)
        pid = state.get("pid")
        if state.get("status") == "running" and pid != os.getpid() and pid_alive(pid):
            raise SpecError(
                [f"out: {self.path} holds sweep {owner}, running now (pid {state['pid']})"]
            )
        if not overwrite:
            old_spec = (self.path / SPEC).read_text() if (self.path / SPEC).exists() else None
            same = old_spec is not None and spec_fingerprint(old_spec) == spec_fingerprint(
                spec_json
            )
            what = "of the same spec" if same else "of another spec"
            raise SpecError([
                f"out: {self.path} holds sweep {owner or '(unnamed)'} {what} "
                f"({state.get('status', 'unknown status')}); its files and MLflow runs are its own. "
                f"Use `goldilocks resume {self.path}`, another folder, or --overwrite "
                "(overwrite=True) to start a new sweep there with new MLflow runs"
            ])  # fmt: skip
        for name in SWEEP_FILES:
            (self.path / name).unlink(missing_ok=True)
        for name in SWEEP_DIRS:
            shutil.rmtree(self.path / name, ignore_errors=True)

    def set_state(self, **changes: Any) -> None:
        current = self.state() if (self.path / STATE).exists() else {}
        write_json_atomic(self.path / STATE, {**current, **changes, "updated_at": time.time()})

    def write_progress(self, progress: dict) -> None:
        write_json_atomic(self.path / PROGRESS, {**progress, "updated_at": time.time()})


def pid_alive(pid: Any) -> bool:
    """A process of ours with this pid runs (another user's is not ours; a zombie, which a
    container's init may never reap, has ended)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # not Linux, or gone just now: the signal probe said it was there
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
