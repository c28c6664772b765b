"""Reading a sweep's folder (written by its driver: see `sweeps.pipeline`) and naming files in it.

Every name that comes from a request is checked here, so nothing can point outside its folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sweeps.folder import PLOTS, PROGRESS, STATE, read_json

SWEEP_ID = re.compile(r"^[0-9a-f]{32}$")
# No leading dot: refuses "..", "." and hidden files; no slash: refuses "../x".
FILE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$")
ATTEMPT_MARK = "--- attempt "  # the runner's header line before each driver's output
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class BadName(ValueError):
    """A file name from a request that could leave its folder (or is not a file name)."""


def sweep_folder(sweeps_dir: Path, sweep_id: str) -> Path:
    if not SWEEP_ID.match(sweep_id):
        raise BadName(f"id: '{sweep_id}' is not a sweep id (32 hexadecimal digits)")
    return sweeps_dir / sweep_id


def plot_path(folder: Path, name: str) -> Path:
    """DIR/plots/<name>.png for a plot name given with or without its .png suffix."""
    if not FILE_NAME.match(name):
        raise BadName(
            f"name: '{name}' is not a plot name (letters, digits, '.', '_', '-'; no leading "
            "dot, no '/')"
        )
    if not name.endswith(".png"):
        name += ".png"
    plots = (folder / PLOTS).resolve()
    path = (plots / name).resolve()
    if path.parent != plots:  # belt and braces: the pattern already forbids this
        raise BadName(f"name: '{name}' leaves the plots folder")
    return path


def read_state(folder: Path) -> dict[str, Any]:
    return read_json(folder / STATE) or {}


def read_progress(folder: Path) -> dict[str, Any] | None:
    return read_json(folder / PROGRESS)


def list_plots(folder: Path) -> list[str]:
    plots = folder / PLOTS
    return sorted(p.name for p in plots.glob("*.png")) if plots.is_dir() else []


def log_tail(path: Path, lines: int = 15, limit: int = 2000) -> str:
    """The end of a driver's log, for an error message when the driver said nothing itself."""
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    text = _ANSI.sub("", text).replace("\r", "\n")
    text = text.rsplit(ATTEMPT_MARK, 1)[-1].split("\n", 1)[-1]  # this attempt's output only
    kept = [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(kept)[-limit:]
