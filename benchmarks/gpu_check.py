"""GPU check: population vs loop for the built-in models, the matmul peaks, memory, and the
largest population that fits, in one command and one JSON line (docs/benchmarks.md, "GPU check").

For each model (the MLP of benchmarks/population_vs_loop.py; the transformer, ResNet and CNN
of benchmarks/architectures.py), at each lane count (64, 256, 1024; `--quick`: 8, 16, 32):

- population: `train_population` over all lanes (the trainer's default width: on a GPU one
  slice of up to 1,024 lanes, `population.GPU_WIDTH`), warm (a first run compiles), wall time;
- loop: the same trainer with ONE lane, once per learning rate, one after the other (the same
  init, minibatches, evaluations and bookkeeping: only the lane axis differs). A lane's run
  costs the same whatever the population, so the loop is timed on `--loop-lanes` learning
  rates and scaled to each lane count (`loop_lanes_timed` says how many were run);
- threaded loop: those single-lane runs `cores` at a time from as many threads (the loop on
  all the host's cores; on a GPU their programs share the one device);
- GFLOP/s: training FLOPs per lane-step from XLA's cost analysis of one lane's step (forward,
  backward, optimizer; evaluations not counted) x lanes x steps / wall seconds, against a bf16
  and an fp32 matmul peak measured in the same run (default precision, as training runs it);
- peak device memory: `memory_stats()["peak_bytes_in_use"]` after the population ran (lane
  counts in increasing order, one process per model, so each figure is that count's peak),
  else (a CPU) XLA's memory analysis of the slice's largest program; both where available;
- the largest population that fits: `sweeps.core.memory.size_population`, the trainer's own
  programs compiled at two probe widths and scaled (no trial and OOM), against the device's
  free allocator bytes (a CPU: `--budget-mb`); then a population of that size trains one
  chunk (`--no-verify` skips it) and its memory peak is reported beside the prediction.

Each model runs in its own subprocess (a fresh device allocator per model; a failure costs one
model, reported under "error"), and the matmul peak in another: the parent never starts JAX.
Progress goes to stderr; the one JSON line to stdout.

    python benchmarks/gpu_check.py [--quick] [--models mlp cnn transformer resnet]
        [--lanes 64 256 1024] [--steps 200] [--loop-lanes 32] [--budget-mb N] [--no-verify]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere, installed or not
    sys.path.insert(0, str(ROOT))

MODELS = ("mlp", "cnn", "transformer", "resnet")
FULL = {"lanes": [64, 256, 1024], "steps": 200, "eval_every": 50, "loop_lanes": 32,
        "matmul_n": 8192, "matmul_repeats": 10, "probes": (16, 32)}  # fmt: skip
# Quick: every program at width 8 or 1 (the loop's), so each model compiles two widths only.
QUICK = {"lanes": [8, 16, 32], "steps": 4, "eval_every": 4, "loop_lanes": 2,
         "matmul_n": 256, "matmul_repeats": 3, "probes": (1, 8), "budget_mb": 16,
         "cpu_width": "8"}  # fmt: skip
CHILD_TIMEOUT_S = 400


# --------------------------------------------------------------------------- the cases
def case(model: str, quick: bool, steps: int, eval_every: int):
    """(data, structure) of a model: the benchmarks' own cases; `quick` shrinks the network
    and the batch (the same data, the same code paths)."""
    from models.specs import CNNSpec, MLPSpec, ResNetSpec, TransformerSpec

    if model == "mlp":
        from benchmarks.population_vs_loop import setup

        data, structure = setup(steps)
    else:
        from benchmarks.architectures import case as arch_case

        data, structure = arch_case(model, steps)
    if quick:
        small = {"mlp": MLPSpec(name="mlp", hidden=[16]),
                 "cnn": CNNSpec(name="cnn", channels=[4], hidden=[8]),
                 "resnet": ResNetSpec(name="resnet", channels=[4]),
                 "transformer": TransformerSpec(name="transformer", d_model=8, n_layers=1,
                                                n_heads=2)}  # fmt: skip
        structure = dataclasses.replace(structure, model=small[model], batch_size=8)
        data = dataclasses.replace(data, x_val=data.x_val[:32], y_val=data.y_val[:32])
    return data, dataclasses.replace(structure, steps=steps, eval_every=eval_every)


def learning_rates(lanes: int):
    from benchmarks.architectures import learning_rates as lrs

    return lrs(lanes)


# --------------------------------------------------------------------------- child: pieces
def step_flops(structure, data) -> float:
    """FLOPs of one lane's training step (forward, backward, optimizer update), from XLA's
    cost analysis of the trainer's own `lane_step` lowered for one lane (nothing runs)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from benchmarks.common import adam_hyperparams
    from sweeps.core import population
    from sweeps.core.program import get_program

    prog = get_program(structure, data)
    hp = adam_hyperparams(structure, np.ones(1, np.float32))
    keys, idx = population._init_inputs(np.zeros(1, np.int64), [(0, 1)], 1)
    state = jax.eval_shape(prog._init_pop, keys, idx[0], hp)
    lane = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), state)
    batch = lambda a: jax.ShapeDtypeStruct((structure.batch_size, *a.shape[1:]), a.dtype)  # noqa: E731
    lowered = jax.jit(prog.lane_step).lower(
        lane, jnp.float32(1e-3), {}, batch(data.x_train), batch(data.y_train), jnp.int32(0)
    )

    def flops_of(analysis) -> float | None:
        cost = analysis()
        if isinstance(cost, (list, tuple)):  # older jaxlibs: one dict per device
            cost = cost[0] if cost else {}
        return (cost or {}).get("flops")

    try:  # the HLO's own count, without compiling; else the compiled program's
        flops = flops_of(lowered.cost_analysis)
    except (AttributeError, NotImplementedError, RuntimeError):
        flops = None
    if flops is None:
        flops = flops_of(lambda: lowered.compile().cost_analysis())
    return float(flops if flops is not None else float("nan"))


def device_stats() -> dict | None:
    import jax

    try:
        return jax.devices()[0].memory_stats()
    except (AttributeError, NotImplementedError, RuntimeError):
        return None


def program_peak(structure, data, width: int) -> int | None:
    """The largest of a slice's programs (init, eval, chunk), from XLA's memory analysis."""
    from sweeps.core import memory, population

    programs, _ = population.probe_programs(structure, data, width)
    sizes = [memory.program_bytes(p) for p in programs]
    return None if any(s is None for s in sizes) else max(s.total for s in sizes)


def time_loop(structure, data, k: int, cores: int) -> dict:
    """Seconds per learning rate of the one-lane loop, run one after the other and `cores` at
    a time, over `k` learning rates (a warm-up lane first: it compiles)."""
    from benchmarks.common import Clock, side_by_side, train_once

    lrs = learning_rates(k)
    _, _, warm, _ = train_once(structure, data, lrs[:1], threads=1)
    clock = Clock()
    for i in range(k):
        train_once(structure, data, lrs[i : i + 1], threads=1)
    sequential, _ = clock.stop()
    calls = [lambda i=i: train_once(structure, data, lrs[i : i + 1], threads=1) for i in range(k)]
    clock = Clock()
    side_by_side(cores, calls)
    threaded, _ = clock.stop()
    return {"lanes_timed": k, "per_lane_s": sequential / k, "threaded_per_lane_s": threaded / k,
            "threads": cores, "compile_s": warm.compile_s}  # fmt: skip


# The slice width every population trains at (quick: 8); None: the trainer's default (on a GPU
# one slice of up to 1024 lanes, on a CPU the default rule).
WIDTH: list[int | None] = [None]


def time_population(structure, data, lanes: int) -> dict:
    """A cold run (compiles), then the timed warm run; device memory after it."""
    import numpy as np

    from benchmarks.common import train_once

    lrs = learning_rates(lanes)
    _, _, cold, _ = train_once(structure, data, lrs, width=WIDTH[0])
    wall, cpu, warm, last = train_once(structure, data, lrs, width=WIDTH[0])
    stats = device_stats() or {}
    return {"population_s": wall, "population_cpu_s": cpu, "train_s": warm.train_s,
            "compile_s": cold.compile_s, "width": last.width, "threads": last.threads,
            "diverged_lanes": int(np.sum(last.diverged_at >= 0)),
            "memory_stats_peak_bytes": stats.get("peak_bytes_in_use")}  # fmt: skip


def fit(structure, data, args, probes) -> dict:
    """The largest population that fits, sized by the trainer (sweeps/core/memory.py)."""
    import jax

    from sweeps.core import memory

    budget = memory.device_budget(jax.devices()[0])
    if budget is not None:
        budget_bytes, source = budget["free"], "memory_stats free (bytes_limit - bytes_in_use)"
    else:
        budget_bytes, source = args.budget_mb * 2**20, "--budget-mb"
    sized = memory.size_population(structure, data, budget_bytes, probes=probes, width_cap=WIDTH[0])
    return {**sized, "budget_source": source, "verified": None}


def verify(structure, data, lanes: int) -> dict:
    """One chunk of training of a population of `lanes`, and the device's peak after it."""
    import numpy as np

    from benchmarks.common import train_once

    one_chunk = dataclasses.replace(structure, steps=structure.eval_every)
    lrs = np.full(lanes, 1e-3, np.float32)
    try:
        wall, _, _, last = train_once(one_chunk, data, lrs)
    except Exception as exc:  # noqa: BLE001 - an OOM here is the finding, not a crash
        return {"trained": False, "seconds": None, "error": repr(exc)[:500],
                "memory_stats_peak_bytes": None}  # fmt: skip
    return {"trained": bool(np.all(np.isfinite(last.val_loss))), "seconds": wall, "error": None,
            "memory_stats_peak_bytes": (device_stats() or {}).get("peak_bytes_in_use")}  # fmt: skip


# --------------------------------------------------------------------------- children
def child_peak(args) -> dict:
    import jax

    from benchmarks.common import measure_peak

    n, r = args.matmul_n, args.matmul_repeats
    return {"backend": jax.default_backend(), "device": str(jax.devices()[0]),
            "device_kind": getattr(jax.devices()[0], "device_kind", ""),
            "jax": jax.__version__, "matmul_n": n,
            "peak_gflops": {"float32": measure_peak(n, r, "float32"),
                            "bfloat16": measure_peak(n, r, "bfloat16")}}  # fmt: skip


def child_model(args) -> dict:
    phases, t0 = {}, time.perf_counter()

    def lap(name: str) -> None:  # where a model's seconds went (the 8-minute budget)
        nonlocal t0
        phases[name] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()

    data, structure = case(args.child, args.quick, args.steps, args.eval_every)
    lap("setup")
    say(f"{args.child}: flops ...")
    flops = step_flops(structure, data)
    lap("flops")
    say(f"{args.child}: loop over {args.loop_lanes} learning rates ...")
    loop = time_loop(structure, data, args.loop_lanes, args.cores)
    lap("loop")
    rows = {}
    for lanes in sorted(args.lanes):  # increasing: the running device peak is this count's
        say(f"{args.child}: population of {lanes} lanes ...")
        pop = time_population(structure, data, lanes)
        program = program_peak(structure, data, pop["width"])
        loop_s = loop["per_lane_s"] * lanes
        threaded_s = loop["threaded_per_lane_s"] * lanes
        lane_steps = lanes * structure.steps
        gf = lambda s, n=lane_steps: flops * n / s / 1e9  # noqa: E731
        measured = pop["memory_stats_peak_bytes"]
        rows[str(lanes)] = {
            "lanes": lanes,
            **pop,
            "loop_s": loop_s,
            "loop_threaded_s": threaded_s,
            "speedup": loop_s / pop["population_s"],
            "speedup_vs_threaded_loop": threaded_s / pop["population_s"],
            "gflops": gf(pop["population_s"]),
            "loop_gflops": gf(loop_s),
            "program_bytes": program,
            "peak_memory_bytes": measured if measured is not None else program,
            "peak_memory_source": "memory_stats" if measured is not None else "memory_analysis",
        }
        lap(f"population_{lanes}")
    say(f"{args.child}: sizing the largest population ...")
    sized = fit(structure, data, args, args.probes)
    lap("max_population")
    if sized.get("model"):
        from sweeps.core.memory import MemoryModel

        model = MemoryModel(**sized["model"])
        for row in rows.values():  # the sizing's prediction beside what each count used
            row["predicted_bytes"] = model.bytes_for(int(row["lanes"]))
    out = {"model": args.child, "batch": structure.batch_size, "steps": structure.steps,
           "eval_every": structure.eval_every, "params_spec": structure.model.model_dump(),
           "flops_per_lane_step": flops, "loop": loop, "lanes": rows,
           "max_population": sized, "phase_s": phases, "error": None}  # fmt: skip
    # Everything so far goes out first: a verification that runs past the parent's timeout
    # (or crashes the process) loses only itself.
    print(json.dumps(out), flush=True)
    if args.verify and sized.get("lanes"):
        say(f"{args.child}: training {sized['lanes']} lanes for one chunk ...")
        sized["verified"] = verify(structure, data, sized["lanes"])
        lap("verify")
        print(json.dumps({"verified": sized["verified"], "phase_s": phases}), flush=True)
    return out


# --------------------------------------------------------------------------- the parent
def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def spawn(args, what: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", what,
           "--lanes", *map(str, args.lanes), "--steps", str(args.steps),
           "--loop-lanes", str(args.loop_lanes), "--budget-mb", str(args.budget_mb)]  # fmt: skip
    cmd += ["--quick"] if args.quick else []
    cmd += [] if args.verify else ["--no-verify"]
    try:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True,
                              timeout=args.child_timeout, check=False)  # fmt: skip
        stdout, error = done.stdout, None if done.returncode == 0 else f"exit {done.returncode}"
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or ""
        stdout = out.decode() if isinstance(out, bytes) else out
        error = f"timed out after {args.child_timeout} s"
    lines = [json.loads(x) for x in stdout.strip().splitlines() if x.startswith("{")]
    if not lines:
        return {"error": error or "no output"}
    result = lines[0]
    if len(lines) > 1:  # a model's verification of its largest population
        result["max_population"]["verified"] = lines[1]["verified"]
        result["phase_s"] = lines[1]["phase_s"]
    elif error and "max_population" in result:  # lost in the verification only
        result["max_population"]["verified"] = {"trained": False, "seconds": None,
                                                "error": error, "memory_stats_peak_bytes": None}  # fmt: skip
    elif error:
        result["error"] = error
    return result


def add_peak_fractions(result: dict) -> None:
    peaks = result.get("peak_gflops") or {}
    for m in result["models"].values():
        for row in (m.get("lanes") or {}).values():
            row["fraction_of_fp32_peak"] = row["gflops"] / peaks["float32"]
            row["fraction_of_bf16_peak"] = row["gflops"] / peaks["bfloat16"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes on any backend (seconds)")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--lanes", nargs="+", type=int, help="lane counts (default 64 256 1024)")
    p.add_argument("--steps", type=int, help="training steps (default 200)")
    p.add_argument("--loop-lanes", type=int, help="learning rates the loop is timed on")
    p.add_argument("--budget-mb", type=float, help="memory budget where the device has none")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="do not train the largest population that fits")  # fmt: skip
    p.add_argument("--child-timeout", type=float, default=CHILD_TIMEOUT_S)
    p.add_argument("--jobs", type=int, default=1,
                   help="models checked at once (default 1: timings undisturbed)")  # fmt: skip
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    base = QUICK if args.quick else FULL
    args.lanes = args.lanes or base["lanes"]
    args.steps = args.steps or base["steps"]
    args.eval_every = min(base["eval_every"], args.steps)
    args.loop_lanes = args.loop_lanes or min(base["loop_lanes"], max(args.lanes))
    args.budget_mb = args.budget_mb or base.get("budget_mb", 1024)
    args.matmul_n, args.matmul_repeats = base["matmul_n"], base["matmul_repeats"]
    args.probes = base["probes"]
    try:
        args.cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        args.cores = os.cpu_count() or 1
    if min(args.lanes) < 1 or args.steps < 1 or args.loop_lanes < 1:
        p.error("--lanes, --steps and --loop-lanes must be positive")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.child and args.quick:  # set, not measured: measuring widths costs compiles
        WIDTH[0] = int(QUICK["cpu_width"])
    if args.child:
        if args.child == "peak":
            out = child_peak(args)
            print(json.dumps(out))
            return out
        return child_model(args)  # prints its own lines
    t0 = time.perf_counter()
    say("matmul peaks ...")
    result = {"quick": args.quick, "python": platform.python_version(), "cores": args.cores,
              "steps": args.steps, "lane_counts": sorted(args.lanes), **spawn(args, "peak"),
              "models": {}}  # fmt: skip
    # --jobs > 1 (the suite's quick check): models side by side, figures only indicative
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        done = dict(zip(args.models, pool.map(lambda m: spawn(args, m), args.models), strict=True))
    for model in args.models:
        result["models"][model] = {"model": model, **done[model]}
    if "peak_gflops" in result:
        add_peak_fractions(result)
    result["wall_s"] = time.perf_counter() - t0
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
