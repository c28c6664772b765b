"""How many lanes share one compiled slice on a CPU: measured on the machine at hand.

The best width depends on the CPU (its caches, its vector units), the model and the batch: a
constant chosen on one machine was 0.85x the loop on another. So, once per structure and
machine, a few candidate widths each train one chunk (compiled once each, then timed on a
second run) and the fastest per lane-step wins. Width 1 is always a candidate: it is the
loop's own program, so the chosen width never loses to the loop on the measurement.

The choice is kept on disk (next to the persistent compile cache), keyed by the CPU, the jax
version, the backend and the structure, so later sweeps and the Ray trials of this host read
it instead of measuring again (a trial that reads the driver's choice also finds the
programs the driver compiled ahead for it). `GOLDILOCKS_CPU_LANE_WIDTH` overrides it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CANDIDATES = (1, 2, 4, 8, 16, 32, 64)
CACHE_FILE = "lane-width.json"


def machine() -> str:
    """The CPU this runs on, as /proc/cpuinfo names it (else the platform's words)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} x{os.cpu_count()}"


def cache_key(structure_id: str, backend: str) -> str:
    import jax

    raw = json.dumps([machine(), jax.__version__, backend, structure_id])
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


class WidthCache:
    """A small JSON file of {key: {"width", "measured", "structure", "machine"}}."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / CACHE_FILE

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            entry = json.loads(self.path.read_text()).get(key)
        except (OSError, ValueError, AttributeError):
            return None
        return entry if isinstance(entry, dict) and isinstance(entry.get("width"), int) else None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        """Read-merge-replace: concurrent writers lose at most each other's latest entry."""
        try:
            current = json.loads(self.path.read_text())
            current = current if isinstance(current, dict) else {}
        except (OSError, ValueError):
            current = {}
        current[key] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(current, indent=1))
        os.replace(tmp, self.path)


def choose(time_width: Callable[[int], float], candidates=CANDIDATES) -> dict[str, Any]:
    """Time each candidate (seconds per lane-step) and pick the fastest; ties go narrower."""
    t0 = time.perf_counter()
    measured = {int(w): float(time_width(w)) for w in candidates}
    width = min(measured, key=lambda w: (measured[w], w))
    return {"width": width, "measured": measured, "tune_s": round(time.perf_counter() - t0, 3)}
