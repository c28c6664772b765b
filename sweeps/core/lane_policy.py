"""Which slice width a population trains at: a setting, a measurement on this CPU, or the
default rule, decided once by the driver and recorded (the trainer is told the width).

The policy's settings come from the entry points (`LanePolicy`, built from GOLDILOCKS_*
settings there); nothing here reads the environment. The measuring itself is
sweeps/core/lane_width.py's walk over `population.time_widths`.

Measuring costs a few compiles and seconds of timing (5-30 s on 2 cores), so it is done only
where its answer can pay for itself: a population of more than one lane whose sweep trains
at least `LanePolicy.min_lane_steps` lane-steps of that structure (at ~1e-4 s a lane-step, a
minute of training, where the widths measured here differ by 10-30 %). The demo (17,100
lane-steps, 2 s of training) spent 4.6 s measuring to choose what the rule chose.

What is measured is kept per structure and thread count (seconds per lane-step of each width,
independent of the population size): any population size is then costed from it
(`lane_width.step_cost`), and only widths never timed are measured.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import jax

from models.specs import ImportModelSpec
from sweeps.core import lane_width as tuner
from sweeps.core.data import Dataset
from sweeps.core.lane_width import LanePolicy, default_cpu_width
from sweeps.core.population import slice_threads, time_widths
from sweeps.core.program import Structure


def structure_id(structure: Structure, data: Dataset) -> str:
    """What the per-lane-step cost's dependence on width comes from: the model (a user's by
    its code, not by which object or file it came from), loss, batch and data shapes; not the
    optimizer or schedule (elementwise over the lanes), not the steps."""
    s = structure
    model = s.model.model_dump(mode="json")
    if isinstance(s.model, ImportModelSpec):
        model["import"] = _code_fingerprint(s.model.import_)
    return json.dumps(
        [model, s.loss, s.metrics, s.batch_size, s.eval_every, list(data.x_train.shape),
         list(data.x_val.shape), str(data.x_train.dtype), data.num_classes]
    )  # fmt: skip


def _code_fingerprint(ref: str) -> str:
    """The referenced object's name and code (the same class handed to the Python API twice,
    a notebook cell run again, or a file loaded from elsewhere is the same model): its
    methods' bytecode and constants, which need no source file."""
    from models import imports

    try:
        obj = imports.resolve(ref)
    except Exception:  # not importable here: its reference is all there is
        return ref
    digest = hashlib.sha256()
    functions = [obj] if callable(obj) and hasattr(obj, "__code__") else []
    functions += (
        [v for _, v in sorted(vars(obj).items()) if hasattr(v, "__code__")]
        if isinstance(obj, type)
        else []
    )
    for fn in functions:
        code = fn.__code__
        digest.update(code.co_code)
        digest.update(repr([c for c in code.co_consts if not hasattr(c, "co_code")]).encode())
    if not functions:
        return ref
    return f"{getattr(obj, '__qualname__', ref)}:{digest.hexdigest()[:16]}"


# Per (structure, threads): {width: seconds per lane-step}, as this process knows them.
_FIGURES: dict[tuple[str, int], dict[int, float]] = {}


def choose(
    policy: LanePolicy,
    structure: Structure,
    data: Dataset,
    num_lanes: int,
    *,
    threads: int | None = None,
    lane_steps: int | None = None,
    measure: bool = False,
) -> dict[str, Any]:
    """The slice width for a population of `num_lanes`, trained `threads` slices at a time
    (default: the policy's, else this process's cores), and why:

    {"width", "source": setting | measured | cache | default, "reason", "threads",
     "seconds_per_lane_step": {width: s} (figures the choice was made on),
     "cost_per_step_s": {width: s} (the whole population's step at each width: the choice is
     the cheapest, narrower winning ties within lane_width.TIE), "tune_s": seconds measuring}.

    Measures now only with `measure` (the driver, before any trial starts) and where it pays:
    `lane_steps` (this structure's in the sweep) at least `policy.min_lane_steps`."""
    if jax.default_backend() != "cpu":
        return {"width": policy.gpu_width, "source": "setting", "reason": "accelerator"}
    threads = slice_threads(threads or policy.threads)
    if policy.cpu_width:
        reason = "GOLDILOCKS_CPU_LANE_WIDTH"
        return {
            "width": policy.cpu_width,
            "source": "setting",
            "reason": reason,
            "threads": threads,
        }
    default = {"width": default_cpu_width(structure), "source": "default", "threads": threads}
    if not policy.tune:
        return {**default, "reason": "measuring is off (GOLDILOCKS_TUNE_LANE_WIDTH=0)"}
    if num_lanes <= 1:
        return {**default, "reason": "one lane: nothing to choose"}
    sid = structure_id(structure, data)
    cache = tuner.WidthCache(policy.cache_dir) if policy.cache_dir else None
    key = tuner.cache_key(sid, "cpu", threads)
    figures = _FIGURES.setdefault((sid, threads), {})
    if not figures and cache is not None:
        figures.update(cache.get_figures(key))
    wanted = tuner.widths_for(num_lanes)
    if all(w in figures for w in wanted):
        return _decided(
            num_lanes, threads, figures, wanted, "cache", "measured on this host before"
        )
    if not measure:
        return {**default, "reason": "not measured for this structure on this host"}
    if lane_steps is not None and lane_steps < policy.min_lane_steps:
        return {
            **default,
            "reason": f"not worth measuring: {lane_steps:,} lane-steps "
            f"(< {policy.min_lane_steps:,})",
        }
    t0 = time.perf_counter()
    tuner.search(
        num_lanes,
        lambda ws: _timed(figures, ws, structure, data, threads),
        threads=threads,
    )
    if cache is not None:
        cache.put_figures(key, figures, structure=sid, threads=threads)
    tried = [w for w in wanted if w in figures]
    choice = _decided(num_lanes, threads, figures, tried, "measured", "measured now")
    return {**choice, "tune_s": round(time.perf_counter() - t0, 3)}


def _timed(figures: dict[int, float], widths: list[int], structure, data, threads) -> dict:
    fresh = time_widths(structure, data, widths, threads)
    figures.update({int(w): float(t) for w, t in fresh.items()})
    return fresh


def _decided(num_lanes, threads, figures, widths, source, reason) -> dict[str, Any]:
    """The cheapest of `widths` for this population by its step cost, narrower on a tie."""
    cost = {w: tuner.step_cost(num_lanes, w, figures[w], threads) for w in sorted(widths)}
    best = min(cost, key=lambda w: (cost[w], w))
    for w in sorted(cost):  # a narrower width within the timing noise of the best wins
        if cost[w] <= cost[best] * (1 + tuner.TIE):
            best = w
            break
    return {
        "width": best,
        "source": source,
        "reason": reason,
        "threads": threads,
        "seconds_per_lane_step": {w: figures[w] for w in sorted(widths)},
        "cost_per_step_s": cost,
    }
