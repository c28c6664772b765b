"""How many lanes share one compiled slice on a CPU: measured on the machine at hand.

The best width depends on the CPU (its caches, its vector units), the model and the batch: a
constant chosen on one machine was 0.85x the loop on another. So the driver, before any trial
starts (quietly: nothing else of the sweep runs yet), times one chunk of training at a few
candidate widths, and each population trains at the width that makes *its* step cheapest: a population of `n` lanes at
width `w` runs ceil(n/w) slices of `w` lanes, padding included. Width 1 is always measured: it
is the loop's own program, so the choice never loses to the loop on the measurement.

A CPU trains a population's slices several at a time, one per core (the cores a process has,
or a Ray trial's whole CPUs): XLA's CPU runtime keeps one small program on about one core, so
two slices side by side take the time of one. The widths are timed that way, `threads` copies
at once, and the cost counts rounds of `threads` slices (a lone slice leaves cores idle).

The candidates are walked from narrow to wide, two compiled side by side at a time and timed
round-robin with the best so far (this machine's speed drifts by a third within minutes, so
only figures of one round are compared); the walk stops two widths past the best, or after
`BUDGET_S`: a convolution (best at 1 on a CPU) costs three compiles, a dense model the widths
up to its best and two beyond.

The figures (seconds per lane-step of each width timed) are kept on disk (next to the
persistent compile cache), keyed by the CPU, the jax version, the backend, the threads and the
structure's compute (model, loss, batch and data shapes; not the optimizer, whose update is
elementwise and vectorizes alike at every width), so later sweeps of any population size cost
their widths from them instead of measuring. The driver decides every population's width
(sweeps/core/lane_policy.py) and tells the trials. `GOLDILOCKS_CPU_LANE_WIDTH` overrides it
all; `GOLDILOCKS_TUNE_LANE_WIDTH=0` turns the measurement off.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.specs import ImportModelSpec

if TYPE_CHECKING:
    from sweeps.core.program import Structure

# Width 2 is left out: it never beat both 1 and 4 by much here, and each width costs a compile.
CANDIDATES = (1, 4, 8, 16, 32, 64)
CACHE_FILE = "lane-width.json"
# A wider width must beat a narrower one by more than this to be chosen (timing noise).
TIE = 0.03
# Stop walking to wider widths after this many that do not beat the best.
PATIENCE = 2
# Nor once measuring has taken this long (a large model compiles for seconds per width).
BUDGET_S = 20.0


MEASURE_MIN_LANE_STEPS = 500_000  # sweeps/core/lane_policy.py: where measuring pays


@dataclass(frozen=True)
class LanePolicy:
    """The settings the width decision needs, read once at an entry point."""

    cpu_width: int | None = None  # GOLDILOCKS_CPU_LANE_WIDTH: every CPU population at this
    gpu_width: int = 1024  # GOLDILOCKS_GPU_LANE_WIDTH
    tune: bool = True  # GOLDILOCKS_TUNE_LANE_WIDTH: measure where it pays
    threads: int | None = None  # GOLDILOCKS_CPU_THREADS: slices side by side (None: cores)
    cache_dir: Path | None = None  # measured figures kept here (None: in this process only)
    min_lane_steps: int = MEASURE_MIN_LANE_STEPS


def slice_width(num_lanes: int, cap: int) -> int:
    """The slice width for `num_lanes` at most `cap` wide, cut into equal slices (10 lanes at
    cap 8 are 5 + 5, not 8 + 2)."""
    slices = -(-num_lanes // cap)
    return -(-num_lanes // slices)


def widths_for(num_lanes: int, candidates=CANDIDATES) -> list[int]:
    """The distinct slice widths a population of `num_lanes` can train at, narrow to wide."""
    return sorted({slice_width(num_lanes, c) for c in candidates})


def step_cost(num_lanes: int, width: int, seconds_per_lane_step: float, threads: int = 1) -> float:
    """Seconds per training step of the whole population at `width`, its ceil(n/w) slices
    trained `threads` at a time (padded lanes and idle threads of the last round included);
    `seconds_per_lane_step` as timed with `threads` slices running at once."""
    slices = -(-num_lanes // width)
    rounds = -(-slices // threads)
    return rounds * threads * width * seconds_per_lane_step


def search(
    num_lanes: int,
    time_widths: Callable[[list[int]], Mapping[int, float]],
    budget_s: float | None = None,
    threads: int = 1,
) -> tuple[int, dict[int, float]]:
    """(the cheapest width for this population, seconds per lane-step of each width timed).

    Widths are timed with `time_widths`, up to `PATIENCE` at a time (they compile side by
    side), each batch together with the best width so far, timed again: the machine's speed
    drifts (by a third within minutes here), so a width is only ever compared with figures of
    its own round. The walk ends `PATIENCE` widths past the best, or once `budget_s` (default
    `BUDGET_S`) is spent. `threads`: slices trained at once (see `step_cost`)."""
    budget_s = BUDGET_S if budget_s is None else budget_s
    widths = widths_for(num_lanes)
    known: dict[int, float] = {}
    best, best_cost, misses = widths[0], float("inf"), 0
    t0 = time.perf_counter()
    for i, width in enumerate(widths):
        if width not in known:
            if i > 0 and time.perf_counter() - t0 > budget_s:
                break
            # as many as the walk may still need: never one past where it stops
            batch = widths[i : i + PATIENCE - misses]
            fresh = time_widths(batch + ([best] if i > 0 else []))
            known.update({int(w): float(t) for w, t in fresh.items()})
            if i > 0:
                best_cost = step_cost(num_lanes, best, known[best], threads)
        cost = step_cost(num_lanes, width, known[width], threads)
        if cost < best_cost * (1 - TIE):
            best, best_cost, misses = width, cost, 0
        else:
            misses += 1
            if misses >= PATIENCE:
                break
    return best, known


def machine() -> str:
    """The CPU this runs on, as /proc/cpuinfo names it (else the platform's words)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} x{os.cpu_count()}"


def cache_key(structure_id: str, backend: str, threads: int = 1) -> str:
    import jax

    raw = json.dumps([machine(), jax.__version__, backend, structure_id, threads])
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


class WidthCache:
    """A small JSON file of {key: {"figures": {width: seconds per lane-step}, "structure",
    "machine", "threads"}}: what this host measured for a structure at a thread count; any
    population size is costed from it (`step_cost`)."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / CACHE_FILE

    def get_figures(self, key: str) -> dict[int, float]:
        """{width: s/lane-step}, empty when nothing is kept (or the file is damaged)."""
        try:
            figures = json.loads(self.path.read_text()).get(key)["figures"]
            return {int(w): float(t) for w, t in figures.items()}
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            return {}

    def put_figures(self, key: str, figures: Mapping[int, float], **about: Any) -> None:
        self.put(key, {"figures": {str(w): t for w, t in figures.items()}, "machine": machine(),
                       **about})  # fmt: skip

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


def best_of(
    runs: Mapping[int, Callable[[], None]],
    *,
    rounds: int = 3,
    min_s: float = 0.1,
    budget_s: float = 3.0,
) -> dict[int, float]:
    """{width: seconds per call of its run}: in each round every run is called for at least
    `min_s` (a single short call is at the mercy of the timer and the caches), one width after
    the other (a disturbance or a drift of the machine's speed hits them alike); each width
    keeps its best round. At least one round, no more once `budget_s` is spent."""
    best = {w: float("inf") for w in runs}
    t0 = time.perf_counter()
    for _ in range(rounds):
        for width, run in runs.items():
            calls, start = 0, time.perf_counter()
            while True:
                run()
                calls += 1
                took = time.perf_counter() - start
                if took >= min_s:
                    break
            best[width] = min(best[width], took / calls)
        if time.perf_counter() - t0 > budget_s:
            break
    return best


DEFAULT_CPU_WIDTH = 8  # when a width is wanted without a structure to measure
# Models whose lanes share their input's first matmul (one wide matmul for the slice): on a
# CPU they gain from a slice of lanes. Convolutions become grouped convolutions under vmap and
# attention batched matmuls, which XLA's CPU backend runs 1.3-2x slower than one lane at a
# time (benchmarks/architectures.py): those, and the user's models, default to width 1.
DENSE_MODELS = frozenset({"linear", "mlp"})


def default_cpu_width(structure: Structure) -> int:
    """The CPU slice width when nothing is set or measured: 8 for dense models, else 1."""
    dense = getattr(structure.model, "name", None) in DENSE_MODELS and not isinstance(
        structure.model, ImportModelSpec
    )
    return DEFAULT_CPU_WIDTH if dense else 1
