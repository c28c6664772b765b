"""Population vs loop: is one vmapped program faster than training each learning rate alone?

What is compared (digits MLP 64-128-128-10, cross-entropy, Adam, batch 128, 500 steps, 64
log-spaced learning rates from 1e-5 to 1; `--quick`: 100 steps, 16 lanes):

(a) population: the real trainer, `sweeps.core.population.train_population`, with everything a sweep
    pays for: an evaluation of every lane on the validation set every 25 steps, divergence
    bookkeeping and update masking, host copies of the losses after each chunk, and lanes sliced
    at the width the trainer chooses (on a CPU measured per structure and machine and cached:
    sweeps/core/lane_width.py; `--width` or GOLDILOCKS_CPU_LANE_WIDTH set it), the slices
    trained side by side on the process's cores (`threads`; GOLDILOCKS_CPU_THREADS sets it).
(b) loop: a sequential Python loop over the learning rates of ONE jitted single-lane function
    `run(params, opt_state, lr, batch_idx) -> (params, loss_history)`: a `lax.scan` over every
    step, compiled once, with the LR a traced argument (`optax.inject_hyperparams(optax.adam)`).

The loop is the strongest honest baseline in one process: one compile for all LRs (no
per-trial recompiles, unlike a naive Ray-trial-per-LR sweep), one dispatch per LR (no Python per
step), same init and the same minibatches as the population, and no evaluation, divergence
checks or masking at all (every advantage goes to the baseline). What the population adds on top
is the lane axis (the shared minibatch makes layer 1 one wide GEMM and the small per-lane
matmuls are batched together) and the slices trained side by side. `speedup` is against this
loop; `speedup_vs_threaded_loop` against the same loop run `threads` LRs at a time, one thread
each, the way the population runs its slices: what the lane axis alone is worth here.

Both are warmed up before timing and compile is measured separately: AOT
`jax.jit(run).lower(...).compile()` for the loop, `Timing.compile_s` for the population, whose
honest time (`population_s`) is the wall time of a second, warm run. A "bare" population (the
same vmapped Adam step without evaluation, divergence checks or masking, its slices side by
side as the trainer's) shows what the trainer's bookkeeping costs. `peak_gflops` (a warm 2048x2048 fp32 matmul, best of 5) is the
physical limit the achieved `gflops` are compared to; training FLOPs per lane-step are counted as
6 x batch x sum(fan_in x fan_out) (forward 2x, backward 4x).

Optional, in subprocesses (skipped by `--quick` unless asked for): the peak RSS of a 1024-lane
population (`--memory`; the target is under 4 GiB) and the population time at several lane
widths (`--widths`, which justifies the CPU width setting). The table goes to stderr; `--json`
prints one JSON object on stdout.

    python benchmarks/population_vs_loop.py [--quick] [--json] [--lanes N] [--width W]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere, installed or not
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from benchmarks.common import Clock, measure_peak, side_by_side  # noqa: E402
from models import MLPSpec, make_model  # noqa: E402
from sweeps.core import lane_policy, population, program  # noqa: E402
from sweeps.core.batches import batch_plan  # noqa: E402
from sweeps.core.data import Dataset, load_dataset  # noqa: E402
from sweeps.core.losses import get_loss  # noqa: E402
from sweeps.core.optimizers import OPTIMIZERS, set_hyperparams  # noqa: E402
from sweeps.core.population import Timing  # noqa: E402
from sweeps.core.program import Structure, make_hyperparams  # noqa: E402
from sweeps.settings import get_settings  # noqa: E402

BATCH = 128
EVAL_EVERY = 25
HIDDEN = [128, 128]
LR_RANGE = (1e-5, 1.0)
SEED = 0  # every lane starts from the same init, in both (a) and (b)
ADAM = OPTIMIZERS["adam"].defaults  # b1, b2, eps: traced per lane in (a), in the state in (b)
AGREE_RTOL = 1e-3
CHECK_LRS = (1e-5, 1e-4, 1e-3, 1e-2)  # lanes compared between (a) and (b): stable LRs
MEMORY_LANES, MEMORY_STEPS, MEMORY_TARGET_MB = 1024, 50, 4096
WIDTH_LANES, WIDTH_STEPS = 256, 100


# --------------------------------------------------------------------------- setup
def setup(steps: int) -> tuple[Dataset, Structure]:
    data = load_dataset(name="digits")
    structure = Structure(
        model=MLPSpec(name="mlp", hidden=HIDDEN),
        loss="cross_entropy",
        optimizer="adam",
        schedule="constant",
        batch_size=BATCH,
        steps=steps,
        eval_every=EVAL_EVERY,
    )
    return data, structure


def learning_rates(lanes: int) -> np.ndarray:
    return np.logspace(np.log10(LR_RANGE[0]), np.log10(LR_RANGE[1]), lanes).astype(np.float32)


def model_fns(data: Dataset):
    loss = get_loss("cross_entropy", task=data.task)
    return make_model(MLPSpec(name="mlp", hidden=HIDDEN), program.data_shape(data, loss))


def flops_per_lane_step(params) -> float:
    """6 x batch x sum(fan_in x fan_out) over the dense kernels: forward 2x, backward 4x."""
    macs = sum(int(np.prod(k.shape)) for k in jax.tree.leaves(params) if k.ndim == 2)
    return 6.0 * BATCH * macs


WIDTH: list[int | None] = [None]  # --width: every population at this slice width


def set_lane_width(width: int) -> None:
    """Train every population of this run at slice width `width` (--width)."""
    WIDTH[0] = width


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# --------------------------------------------------------------------------- measurements
def _train_once(structure: Structure, data: Dataset, lrs: np.ndarray, width: int | None = None):
    """One full `train_population` run; returns ((wall, cpu) seconds, Timing, last EvalPoint)."""
    hp = make_hyperparams(lrs, {k: np.full(len(lrs), v) for k, v in ADAM.items()}, {})
    seeds = np.full(len(lrs), SEED)
    timing = Timing()
    clock = Clock()
    last = None
    run = population.train_population(structure, data, hp, seeds, timing=timing, width=width)
    for point in run:
        last = point
    return clock.stop(), timing, last


def run_population(structure: Structure, data: Dataset, lrs: np.ndarray, repeats: int) -> dict:
    """The real trainer: the lane width settled as a sweep's driver does (measured here unless
    set or cached), a cold run (compile), then `repeats` warm runs; the best warm wall time."""
    policy = dataclasses.replace(get_settings().lane_policy(), min_lane_steps=0)
    if WIDTH[0]:
        policy = dataclasses.replace(policy, cpu_width=WIDTH[0], gpu_width=WIDTH[0])
    choice = lane_policy.choose(policy, structure, data, len(lrs), measure=True)
    width = choice["width"]
    _, cold, _ = _train_once(structure, data, lrs, width)
    best, warm, last = (float("inf"), 0.0), None, None
    for _ in range(repeats):
        seconds, timing, point = _train_once(structure, data, lrs, width)
        if seconds[0] < best[0]:
            best, warm, last = seconds, timing, point
    return {
        "population_s": best[0],
        "population_cpu_s": best[1],
        "population_train_s": warm.train_s,  # chunks only (no init, no step-0 eval)
        "population_compile_s": cold.compile_s,
        "population_cold_train_s": cold.train_s,
        "width": last.width,  # what the trainer chose here (measured, cached or set)
        "width_choice": choice,
        "final_loss": last.step_losses[:, -1],
        "diverged_at": last.diverged_at,
    }


def _loop_program(data: Dataset):
    """The single-lane baseline: `run(params, opt_state, lr, batch_idx) -> (params, losses)`."""
    model = model_fns(data)
    loss_fn = get_loss("cross_entropy").fn
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=0.0, **ADAM)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    # The MLP carries no state (no BatchNorm, no dropout): `model_state` is {}.
    params, model_state = model.init(jax.random.key(SEED))

    def run(params, opt_state, lr, batch_idx):
        opt_state = set_hyperparams(opt_state, {"learning_rate": lr})

        def step(carry, rows):
            params, opt_state = carry
            xb, yb = x[rows], y[rows]
            objective = lambda p: loss_fn(model.apply(p, model_state, xb, True)[0], yb)  # noqa: E731
            loss, grads = jax.value_and_grad(objective)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, _), losses = jax.lax.scan(step, (params, opt_state), batch_idx)
        return params, losses

    return run, params, tx.init(params)


def run_loop(data: Dataset, lrs: np.ndarray, steps: int, repeats: int, threads: int) -> dict:
    """A Python loop over LRs of one AOT-compiled scan; warm-up first, best of `repeats`; then
    the same loop `threads` LRs at a time (`loop_threaded_s`), as the population trains its
    slices."""
    run, params, opt_state = _loop_program(data)
    idx = jnp.asarray(batch_plan(data.n_train, BATCH, steps, SEED))
    lr_args = [jnp.float32(lr) for lr in lrs]
    t0 = time.perf_counter()
    compiled = jax.jit(run).lower(params, opt_state, lr_args[0], idx).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(params, opt_state, lr_args[0], idx))  # warm-up

    best, histories = (float("inf"), 0.0), None
    for _ in range(repeats):
        outs = []
        clock = Clock()
        for lr in lr_args:
            outs.append(jax.block_until_ready(compiled(params, opt_state, lr, idx)))
        seconds = clock.stop()
        if seconds[0] < best[0]:
            best, histories = seconds, [np.asarray(losses) for _, losses in outs]
    threaded = (float("inf"), 0.0)
    calls = [
        lambda lr=lr: jax.block_until_ready(compiled(params, opt_state, lr, idx)) for lr in lr_args
    ]
    for _ in range(repeats if threads > 1 else 0):
        clock = Clock()
        side_by_side(threads, calls)
        threaded = min(threaded, clock.stop())
    if threads <= 1:
        threaded = best
    return {
        "loop_s": best[0],
        "loop_cpu_s": best[1],
        "loop_threaded_s": threaded[0],
        "loop_threaded_cpu_s": threaded[1],
        "loop_compile_s": compile_s,
        "final_loss": np.array([h[-1] for h in histories]),
        "flops_per_lane_step": flops_per_lane_step(params),
    }


def run_bare_population(
    data: Dataset, lrs: np.ndarray, steps: int, width: int, repeats: int, threads: int
) -> dict:
    """The same vmapped Adam step with nothing else (no eval, no divergence checks, no masking),
    one scan over all steps per slice of `width` lanes, `threads` slices at a time: the floor
    for the trainer's program. Best of `repeats` warm runs."""
    run, params, opt_state = _loop_program(data)

    def bare(params, opt_state, lr, batch_idx):  # run() vmapped over lanes, batches shared
        return jax.vmap(run, in_axes=(None, None, 0, None))(params, opt_state, lr, batch_idx)

    idx = jnp.asarray(batch_plan(data.n_train, BATCH, steps, SEED))
    padded = np.resize(lrs, -(-len(lrs) // width) * width).reshape(-1, width)
    slices = [jnp.asarray(s) for s in padded]
    t0 = time.perf_counter()
    compiled = jax.jit(bare).lower(params, opt_state, slices[0], idx).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(params, opt_state, slices[0], idx))  # warm-up
    best, outs = (float("inf"), 0.0), None
    for _ in range(repeats):
        clock = Clock()
        calls = [
            lambda s=s: jax.block_until_ready(compiled(params, opt_state, s, idx)) for s in slices
        ]
        done = side_by_side(threads, calls)
        seconds = clock.stop()
        if seconds[0] < best[0]:
            best, outs = seconds, done
    wall, cpu = best
    final = np.concatenate([np.asarray(losses)[:, -1] for _, losses in outs])[: len(lrs)]
    return {"bare_population_s": wall, "bare_cpu_s": cpu, "bare_compile_s": compile_s,
            "final_loss": final}  # fmt: skip


def check_agreement(lrs: np.ndarray, pop: dict, loop: dict, bare: dict) -> dict:
    """Final minibatch loss of a few stable lanes: population vs loop (and bare vs loop)."""
    lanes = sorted({int(np.argmin(np.abs(np.log(lrs / lr)))) for lr in CHECK_LRS})
    rows, agree = [], True
    for i in lanes:
        ref = float(loop["final_loss"][i])
        got = {"population": float(pop["final_loss"][i]), "bare": float(bare["final_loss"][i])}
        rel = {k: abs(v - ref) / max(abs(ref), 1e-12) for k, v in got.items()}
        ok = all(np.isfinite(got[k]) and rel[k] <= AGREE_RTOL for k in got)
        agree &= bool(ok)
        rows.append({"lane": i, "lr": float(lrs[i]), "loop": ref, **got,
                     "rel_diff": max(rel.values())})  # fmt: skip
    return {"agree": agree, "agreement": rows}


# --------------------------------------------------------------------------- subprocesses
def _child(args: argparse.Namespace) -> None:
    """Child process: one population (warm-up first unless --cold); prints its JSON."""
    data, structure = setup(args.steps)
    lrs = learning_rates(args.lanes)
    if args.width:
        set_lane_width(args.width)
    width = WIDTH[0] or population.default_width(structure)
    if not args.cold:
        _train_once(structure, data, lrs, width)
    (wall, cpu), timing, _ = _train_once(structure, data, lrs, width)
    print(json.dumps({"seconds": wall, "cpu_s": cpu, "compile_s": timing.compile_s,
                      "train_s": timing.train_s,
                      "width": width,
                      "peak_rss_mb": peak_rss_mb()}))  # fmt: skip


def _spawn(lanes: int, steps: int, *, width: int | None = None, cold: bool = False) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child",
           "--lanes", str(lanes), "--steps", str(steps)]  # fmt: skip
    if width:
        cmd += ["--width", str(width)]
    if cold:
        cmd.append("--cold")
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_memory(lanes: int = MEMORY_LANES, steps: int = MEMORY_STEPS) -> dict:
    """Peak RSS of a fresh process training a `lanes`-wide population for `steps` steps."""
    out = _spawn(lanes, steps, cold=True)
    return {"peak_rss_mb": out["peak_rss_mb"], "lanes": lanes, "steps": steps,
            "width": out["width"], "seconds": out["seconds"]}  # fmt: skip


def measure_widths(widths: list[int], lanes: int, steps: int) -> dict[str, dict[str, float]]:
    """Warm population (wall, CPU) seconds at each lane width, each in a fresh process."""
    runs = {str(w): _spawn(lanes, steps, width=w) for w in widths}
    return {
        "width_seconds": {w: r["seconds"] for w, r in runs.items()},
        "width_cpu_seconds": {w: r["cpu_s"] for w, r in runs.items()},
    }


# --------------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="100 steps, 16 lanes; no memory/widths")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--lanes", type=int, help="number of learning rates (default 64; quick 16)")
    p.add_argument("--steps", type=int, help="training steps (default 500; quick 100)")
    p.add_argument("--width", type=int, help="lanes per compiled slice (default: the setting)")
    p.add_argument("--repeats", type=int, default=2, help="timed warm runs, best kept")
    p.add_argument("--memory", action="store_true", help=f"measure a {MEMORY_LANES}-lane RSS")
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    p.add_argument("--widths", help="comma-separated lane widths to time (default 4,8,16,32,64)")
    p.add_argument("--width-lanes", type=int, default=WIDTH_LANES)
    p.add_argument("--width-steps", type=int, default=WIDTH_STEPS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--cold", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.lanes = args.lanes or (16 if args.quick else 64)
    args.steps = args.steps or (100 if args.quick else 500)
    if args.widths is None and not args.quick:
        args.widths = "4,8,16,32,64"
    args.width_list = [int(w) for w in args.widths.split(",")] if args.widths else []
    args.do_memory = args.memory or not (args.quick or args.no_memory)
    return args


def report(r: dict) -> None:
    """The human-readable table, on stderr."""
    out = lambda s="": print(s, file=sys.stderr)  # noqa: E731
    out(f"backend {r['backend']} ({r['device']}); {r['lanes']} lanes x {r['steps']} steps, "
        f"batch {BATCH}, lane width {r['width']}")  # fmt: skip
    out(f"{'':26}{'seconds':>10}{'CPU s':>8}{'compile s':>11}{'GFLOP/s':>10}{'% peak':>8}")
    rows = [  # name, wall, cpu, compile, GFLOP/s
        ("population (trainer)", r["population_s"], r["population_cpu_s"],
         r["population_compile_s"], r["gflops"]),
        ("population (bare vmap)", r["bare_population_s"], r["bare_cpu_s"],
         r["bare_compile_s"], r["bare_gflops"]),
        ("loop of jitted scans", r["loop_s"], r["loop_cpu_s"], r["loop_compile_s"],
         r["loop_gflops"]),
        (f"loop, {r['threads']} LRs at once", r["loop_threaded_s"], r["loop_threaded_cpu_s"],
         r["loop_compile_s"], r["loop_threaded_gflops"]),
    ]  # fmt: skip
    for name, s, cpu, c, g in rows:
        out(f"{name:26}{s:10.2f}{cpu:8.2f}{c:11.2f}{g:10.1f}{100 * g / r['peak_gflops']:7.0f}%")
    out(f"speedup vs the {r['threads']}-thread loop {r['speedup_vs_threaded_loop']:.2f}x")
    out(f"speedup loop/population {r['speedup']:.2f}x; trainer overhead vs bare "
        f"{r['population_s'] / r['bare_population_s']:.2f}x; peak {r['peak_gflops']:.0f} GFLOP/s")  # fmt: skip
    for row in r["agreement"]:
        out(f"  lane {row['lane']:3} lr {row['lr']:.1e}: loop {row['loop']:.6g} population "
            f"{row['population']:.6g} bare {row['bare']:.6g} (rel {row['rel_diff']:.1e})")  # fmt: skip
    if not r["agree"]:
        out(f"WARNING: final losses disagree beyond {AGREE_RTOL:g} relative")
    if "peak_rss_mb_1024_lanes" in r:
        mb = r["peak_rss_mb_1024_lanes"]
        verdict = "ok" if mb < MEMORY_TARGET_MB else "OVER the 4 GiB target"
        out(f"peak RSS, {MEMORY_LANES} lanes x {MEMORY_STEPS} steps: {mb:.0f} MB ({verdict})")
    if "width_seconds" in r:
        out(f"lane widths ({r['width_lanes']} lanes x {r['width_steps']} steps, warm runs):")
        for w, s in r["width_seconds"].items():
            out(f"  width {w:>4}: {s:6.2f} s wall, {r['width_cpu_seconds'][w]:6.2f} s CPU")


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.child:
        _child(args)
        return {}
    if args.width:
        set_lane_width(args.width)
    data, structure = setup(args.steps)
    lrs = learning_rates(args.lanes)

    peak = measure_peak()
    threads = population.slice_threads()
    pop = run_population(structure, data, lrs, args.repeats)
    loop = run_loop(data, lrs, args.steps, args.repeats, threads)
    bare = run_bare_population(data, lrs, args.steps, pop["width"], args.repeats, threads)
    total_flops = loop["flops_per_lane_step"] * args.lanes * args.steps
    gflops = lambda s: total_flops / s / 1e9  # noqa: E731
    result = {
        "lanes": args.lanes,
        "steps": args.steps,
        "batch": BATCH,
        "width": pop["width"],
        "threads": threads,  # slices (and, in loop_threaded_s, LRs) trained at once
        # seconds per lane-step of each candidate width, as this machine measured them
        "width_measured": pop["width_choice"].get("measured"),
        "width_source": pop["width_choice"].get("source"),
        "width_tune_s": pop["width_choice"].get("tune_s"),  # measuring it (0: cached)
        "population_s": pop["population_s"],
        "population_train_s": pop["population_train_s"],
        "loop_s": loop["loop_s"],
        "bare_population_s": bare["bare_population_s"],
        "population_cpu_s": pop["population_cpu_s"],
        "loop_cpu_s": loop["loop_cpu_s"],
        "bare_cpu_s": bare["bare_cpu_s"],
        "speedup": loop["loop_s"] / pop["population_s"],
        "loop_threaded_s": loop["loop_threaded_s"],
        # against the loop run `threads` LRs at a time: the population's lane axis alone
        "speedup_vs_threaded_loop": loop["loop_threaded_s"] / pop["population_s"],
        "population_compile_s": pop["population_compile_s"],
        "loop_compile_s": loop["loop_compile_s"],
        "bare_compile_s": bare["bare_compile_s"],
        "gflops": gflops(pop["population_s"]),
        "loop_gflops": gflops(loop["loop_s"]),
        "loop_threaded_gflops": gflops(loop["loop_threaded_s"]),
        "loop_threaded_cpu_s": loop["loop_threaded_cpu_s"],
        "bare_gflops": gflops(bare["bare_population_s"]),
        "peak_gflops": peak,
        "gflops_fraction": gflops(pop["population_s"]) / peak,
        "diverged_lanes": int(np.sum(pop["diverged_at"] >= 0)),
        **check_agreement(lrs, pop, loop, bare),
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0]),
        "peak_rss_mb": peak_rss_mb(),
    }
    if args.do_memory:
        mem = measure_memory()
        result["peak_rss_mb_1024_lanes"] = mem["peak_rss_mb"]
        result["memory"] = mem
    if args.width_list:
        result.update(measure_widths(args.width_list, args.width_lanes, args.width_steps))
        result["width_lanes"], result["width_steps"] = args.width_lanes, args.width_steps
    report(result)
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
