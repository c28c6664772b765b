"""How many lanes fit in a device's memory: sized from the compiled programs, not by trial and OOM.

A population of `n` lanes trains in slices of `w` lanes (`w` = `n` up to the backend's width
cap; population.py). Every slice's state stays resident on the device between chunks, and one
slice's programs (init, chunk, eval) run at a time, so its peak is, to a good approximation,

    bytes(n) = fixed + per_lane_program * w + per_lane_state * (slices * w - w)

- `fixed` + `per_lane_program * w`: the largest of the slice's programs as XLA's own memory
  analysis of the compiled program gives it (arguments + outputs - donated aliases + temps: the
  data, one slice's state, its activations and gradients). Fitted on two small probe widths
  (the same programs the trainer compiles; nothing is trained), so the slope is what one more
  lane costs inside a program and the intercept what does not grow with lanes (the data).
- `per_lane_state`: the bytes of one lane's state and hyperparameters (parameters, optimizer
  state, BatchNorm statistics), read off the state's shapes: what each lane of the *other*,
  idle slices keeps on the device.

`size_population` compiles the probes with the trainer's own programs and returns the largest
`n` whose `bytes(n)` fits the budget less a headroom (fragmentation, the runtime's own
buffers). The arithmetic (`MemoryModel`, `lanes_that_fit`, `program_bytes`) is pure and has no
JAX in it; `size_population` and `device_budget` touch the device.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sweeps.core.lane_width import slice_width

# Fraction of the budget left unused: the allocator's fragmentation and the runtime's own
# buffers (cuDNN/cuBLAS workspaces) are not in a program's memory analysis.
DEFAULT_HEADROOM = 0.10
DEFAULT_PROBES = (16, 32)

# jaxlib's CompiledMemoryStats field names (jax 0.4-0.10); a newer one may rename or add some,
# so each is read with a default and `peak_memory_in_bytes` is used only where it is non-zero.
_FIELDS = {
    "argument": "argument_size_in_bytes",
    "output": "output_size_in_bytes",
    "alias": "alias_size_in_bytes",
    "temp": "temp_size_in_bytes",
    "code": "generated_code_size_in_bytes",
    "peak": "peak_memory_in_bytes",
}


@dataclass(frozen=True)
class ProgramBytes:
    """One compiled program's device memory, as XLA's memory analysis reports it."""

    argument: int = 0
    output: int = 0
    alias: int = 0  # outputs that reuse a donated argument's buffer
    temp: int = 0
    code: int = 0
    peak: int = 0  # XLA's own peak where the runtime reports one (0: not reported)

    @property
    def total(self) -> int:
        """Bytes live while the program runs: its own peak if reported, else everything it
        reads, writes and scratches, donated buffers counted once."""
        summed = self.argument + self.output - self.alias + self.temp + self.code
        return max(self.peak, summed)


def program_bytes(compiled: Any) -> ProgramBytes | None:
    """`compiled.memory_analysis()` as ProgramBytes, or None where the backend gives none.

    Defensive about the API: the analysis may be missing (NotImplementedError, None), a list
    (one per device: the first is taken), a mapping, or an object with some fields absent."""
    try:
        stats = compiled.memory_analysis()
    except (AttributeError, NotImplementedError, RuntimeError, TypeError):
        return None
    if isinstance(stats, Sequence) and not isinstance(stats, (str, bytes)):
        stats = stats[0] if stats else None
    if stats is None:
        return None

    def read(name: str) -> int:
        value = stats.get(name) if isinstance(stats, Mapping) else getattr(stats, name, None)
        try:
            return max(0, int(value or 0))
        except (TypeError, ValueError):
            return 0

    got = ProgramBytes(**{key: read(name) for key, name in _FIELDS.items()})
    return got if got.total > 0 else None


@dataclass(frozen=True)
class MemoryModel:
    """Device bytes of a population as a function of its lanes (see the module docstring)."""

    fixed: float
    per_lane_program: float
    per_lane_state: float
    width_cap: int

    def width(self, lanes: int) -> int:
        return slice_width(lanes, self.width_cap)

    def bytes_for(self, lanes: int) -> float:
        if lanes <= 0:
            return self.fixed
        w = self.width(lanes)
        resident = -(-lanes // w) * w  # the last slice is padded to the width
        return self.fixed + self.per_lane_program * w + self.per_lane_state * (resident - w)


def fit_model(probes: Mapping[int, int], per_lane_state: float, width_cap: int) -> MemoryModel:
    """The model through two (or more) probe widths' program bytes: least squares on
    bytes = fixed + per_lane * width; the slope at least `per_lane_state` (a lane inside a
    program holds at least its own state) and the intercept not below zero."""
    if len(probes) < 2:
        raise ValueError("probes: need program bytes at two widths at least")
    xs, ys = zip(*sorted(probes.items()), strict=True)
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("probes: the widths must differ")
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    slope = max(slope, per_lane_state)
    fixed = max(0.0, my - slope * mx)
    return MemoryModel(float(fixed), float(slope), float(per_lane_state), int(width_cap))


def lanes_that_fit(
    model: MemoryModel, budget_bytes: float, headroom: float = DEFAULT_HEADROOM
) -> int:
    """The largest population whose predicted bytes fit `budget_bytes` less `headroom` of it
    (0 when not even one lane does)."""
    if not 0 <= headroom < 1:
        raise ValueError(f"headroom: {headroom} is not in [0, 1)")
    usable = budget_bytes * (1 - headroom)
    p, s, cap = model.per_lane_program, model.per_lane_state, model.width_cap
    best, k = 0, 1
    # k slices of w lanes hold n in ((k-1) cap, k w] lanes at fixed + p w + s (k-1) w bytes:
    # the widest w that fits gives k's largest n. Walk k up while it can still hold more than
    # k-1 full slices (bytes are not monotone in n: 9 lanes at cap 8 are 5 + 5, under 8 + 8).
    while True:
        per_w = p + s * (k - 1)
        if per_w <= 0 or (k > 1 and s <= 0):
            raise ValueError(
                "per_lane_program and per_lane_state: must be positive to size a population"
            )
        w = min(cap, int((usable - model.fixed) // per_w))
        if w < 1 or k * w <= (k - 1) * cap:
            return best
        best = max(best, k * w)
        k += 1


def device_budget(device: Any) -> dict[str, int] | None:
    """{"limit", "in_use", "free"} bytes of a device's allocator (`memory_stats()`), or None
    where the backend keeps none (a CPU)."""
    try:
        stats = device.memory_stats()
    except (AttributeError, NotImplementedError, RuntimeError):
        return None
    if not stats or "bytes_limit" not in stats:
        return None
    limit, used = int(stats["bytes_limit"]), int(stats.get("bytes_in_use", 0))
    return {"limit": limit, "in_use": used, "free": limit - used}


def size_population(
    structure: Any,
    data: Any,
    budget_bytes: float,
    *,
    headroom: float = DEFAULT_HEADROOM,
    probes: Sequence[int] = DEFAULT_PROBES,
    width_cap: int | None = None,
) -> dict[str, Any]:
    """The largest population of `structure` on `data` that fits `budget_bytes`, from the
    trainer's own programs compiled at the probe widths (cached like any other compile, so a
    sweep that then trains at those widths pays nothing twice).

    {"lanes", "width", "predicted_bytes", "budget_bytes", "headroom", "model": MemoryModel
    fields, "probes": {width: bytes}, "source": "memory_analysis"}; `lanes` is None where
    the backend reports no memory analysis."""
    from sweeps.core import population

    cap = width_cap or population.default_width(structure)
    measured: dict[int, int] = {}
    state_bytes = 0.0
    for width in probes:
        progs, per_lane = population.probe_programs(structure, data, width)
        sizes = [program_bytes(p) for p in progs]
        if any(s is None for s in sizes):
            return {"lanes": None, "source": None, "budget_bytes": budget_bytes}
        measured[width] = max(s.total for s in sizes)
        state_bytes = per_lane
    model = fit_model(measured, state_bytes, cap)
    lanes = lanes_that_fit(model, budget_bytes, headroom)
    return {
        "lanes": lanes,
        "width": model.width(lanes) if lanes else 0,
        "predicted_bytes": model.bytes_for(lanes),
        "budget_bytes": budget_bytes,
        "headroom": headroom,
        "model": asdict(model),
        "probes": measured,
        "source": "memory_analysis",
    }
