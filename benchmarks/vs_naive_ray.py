"""Goldilocks vs a naive Ray Tune sweep: what does a learning-rate sweep cost, end to end?

The same sweep (digits MLP 64-128-128-10, cross-entropy, Adam, batch 128, 500 steps, an
evaluation on the validation set every 25 steps, 64 log-spaced learning rates from 1e-5 to 1,
one seed, every result logged to MLflow on SQLite; `--quick`: 100 steps, 8 learning rates) is
run three ways in ONE process, one after the other, so the ratios compare like with like:

(a) goldilocks: `run_sweep(..., executor="ray")`: the learning rates become two populations
    (`max_lanes_per_trial` = lanes / 2) on two one-CPU trial slots; the sweep fits this host,
    so one Ray Tune trial trains both, in turn, on both CPUs (cluster.one_trial_per_host),
    logged by Goldilocks' own MLflow tracker (parent run + one child run per lane, written by
    a background thread). Wall time from `run_sweep` with Ray not yet started (it starts Ray
    and the MLflow runs at once, as `goldilocks run` does) to the report. Then the same sweep
    again on the Ray left up (`overhead_warm`), as a user's next sweep: the same compile cache
    and the warm trainer the first left in that Ray (sweeps/exec/raytune/warm.py).
(b) naive Ray Tune (benchmarks/naive_tune.py): "the way people do it today", and the
    baseline the speedup is measured against: one Tune trial per learning rate (`tune.grid_search(lrs)`), a function trainable
    that builds the same model (`make_model`) with plain `optax.adam(lr)`, jits its own train
    step (so every trial imports JAX and compiles in its own fresh worker: `reuse_actors=False`),
    trains on the same minibatches (`batch_plan`) and `tune.report`s the validation loss and
    accuracy every 25 steps; logged by Ray's `MLflowLoggerCallback` (one run per trial); two
    trials at a time on one CPU each. Wall time from a fresh `ray.init` (counted) to the end.
(c) inline: the same sweep as (a) with `executor="inline"`: no Ray, both populations trained in
    this process one after the other. The floor that (a)'s Ray overhead is measured against.

Fairness: every variant gets a fresh SQLite store in a temporary folder (no shared locks),
the same data split, minibatches and learning-rate grid, the same Ray init options (those of
`init_ray`, plus `address="local"` so neither joins a cluster another process left running on
this shared machine), the same worker thread settings (`worker_env`: one XLA/BLAS thread per one-CPU trial, so the
comparison is not about oversubscribed cores). Neither Ray variant gets a warm persistent
compile cache: (a) points `GOLDILOCKS_COMPILE_CACHE` at an empty folder, (b) runs without one.
(a)'s warm trainer compiles in its own process (the driver compiles ahead only for trials that
train themselves: `sweeps/exec/precompile.py`); each
variant first forgets every program compiled here before (`forget_programs`): (c) compiles
cold, as a fresh `goldilocks run --executor inline` would.
One-time in-process costs (importing MLflow and its SQLite store, starting JAX's CPU client) are
paid by a warm-up before anything is timed, so the first variant is not charged for them.
`--quick` shrinks the sweep for every variant alike (8 learning rates each): nothing is
extrapolated. A sanity check compares the best learning rate found: (a) and (c) must agree,
and (b)'s within one grid step of theirs.

Logging cost, measured separately on a wider inline sweep (256 lanes, 500 steps, an eval every
10 steps; `--quick`: 64 lanes, 50 steps): `logging_share` is the report's `log_s / wall_s` (the
time spent in MLflow calls, mostly by the background writer while training goes on, so it
overlaps training), and `logging_blocking_s` is the wall time of that sweep with tracking minus
without (`track=False`), both after a warm-up run: the honest "what did logging cost". The
share is a loose figure: `log_s` is the wall time of the writer's MLflow calls, stretched when
training keeps the cores busy, and it includes `finish`'s writes, which come after the report's
`wall_s` was taken, so it can exceed 100 % on a small sweep. The blocking time includes opening
the fresh SQLite store (`MlflowClient(...)` creates its tables; outside both `log_s` and
`wall_s`): `mlflow_store_init_s` times that fixed part alone.

Targets: speedup_vs_naive >= 20, overhead_vs_inline <= 1.5 (Ray started), overhead_warm <= 1.15
(the same sweep on a Ray already up), train_ratio <= 1.15 (the trials' own training seconds over
inline's), logging share < 10 %. The table
goes to stderr; `--json` prints one JSON object on stdout.

    python benchmarks/vs_naive_ray.py [--quick] [--json] [--lanes N] [--steps S] [--overhead-only]

`--overhead-only` runs (a) and (c) alone, to see how Ray's fixed start-up amortises over a
longer sweep (e.g. `--steps 2000`) without waiting for the naive baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere, installed or not
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # as `init_ray` sets them, for (a) and (b)
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

import numpy as np  # noqa: E402
import ray  # noqa: E402

from benchmarks.naive_tune import run_naive  # noqa: E402
from benchmarks.sweep_probes import (  # noqa: E402
    Timeline,
    count_runs,
    grid_index,
    timed_calls,
    tracking_uri,
    trial_compiles,
    warm_up,
    winner_lr,
)
from sweeps.core.program import forget_programs  # noqa: E402
from sweeps.exec.raytune import cluster as ray_cluster  # noqa: E402
from sweeps.exec.trial import decide_widths  # noqa: E402
from sweeps.pipeline import prepare, run_sweep  # noqa: E402
from sweeps.plan.search import learning_rates  # noqa: E402
from sweeps.settings import get_settings  # noqa: E402
from sweeps.spec import SweepSpec, parse_spec  # noqa: E402

BATCH = 128
EVAL_EVERY = 25
HIDDEN = [128, 128]
LR_RANGE = (1e-5, 1.0)
SEED = 0
EXPERIMENT = "vs-naive-ray"
LOGGING_EVAL_EVERY = 10
FULL_LANES, FULL_STEPS = 64, 500
TARGET_SPEEDUP, TARGET_OVERHEAD, TARGET_LOG_SHARE = 20.0, 1.5, 0.10
TARGET_TRAIN_RATIO, TARGET_OVERHEAD_WARM = 1.15, 1.15


# --------------------------------------------------------------------------- setup
def spec_dict(lanes: int, steps: int, eval_every: int = EVAL_EVERY) -> dict:
    """The sweep as a Goldilocks spec: `lanes` log-spaced Adam LRs, two populations."""
    return {
        "name": "vs-naive-ray",
        "experiment": EXPERIMENT,
        "data": {"name": "digits", "val_fraction": 0.2},
        "model": {"name": "mlp", "hidden": HIDDEN},
        "loss": "cross_entropy",
        "train": {"steps": steps, "batch_size": BATCH, "eval_every": eval_every, "seeds": [SEED]},
        "search": {
            "method": "grid",
            "learning_rate": {"min": LR_RANGE[0], "max": LR_RANGE[1], "num": lanes},
            "optimizer": ["adam"],
            "schedule": ["constant"],
        },
        "resources": {
            "cpus_per_trial": 1,
            "max_concurrent_trials": 2,
            "max_lanes_per_trial": max(1, lanes // 2),  # two populations: both cores work
        },
    }


# --------------------------------------------------------------------------- (a) Goldilocks
def run_goldilocks(spec: SweepSpec, tmp: Path, *, warm: bool = False) -> dict:
    """Goldilocks on Ray: fresh Ray (its start counted), empty persistent compile cache.
    `warm`: the same sweep again on the Ray the first run left up (a user's second sweep on
    a kept local head, or the service's warm Ray): Ray's start is not paid again."""
    tag = "a-warm" if warm else "a"
    uri = tracking_uri(tmp / f"{tag}-mlflow")
    previous = os.environ.get("GOLDILOCKS_COMPILE_CACHE")
    # (a) starts from an empty cache; the warm run is the user's next sweep: the same cache, and
    # the warm trainer (sweeps/exec/raytune/warm.py) that (a) left in that Ray
    os.environ["GOLDILOCKS_COMPILE_CACHE"] = str(tmp / "a-jax-cache")
    get_settings.cache_clear()  # settings are read once; read them again with this cache
    try:
        if not warm:
            ray.shutdown()
        # The lane width is measured once per machine and structure, then read from the
        # host's cache (like the imports, a one-time cost): paid before the clock starts.
        ahead = prepare(spec)
        decide_widths(spec, ahead.data, ahead.populations, get_settings().lane_policy())
        forget_programs()
        t0 = time.perf_counter()
        timeline = Timeline(t0)
        # run_sweep starts Ray itself, as `goldilocks run` does (at the same time as the
        # MLflow runs); timed through the function it calls.
        with timed_calls(ray_cluster, "init_ray") as ray_init:
            sweep = run_sweep(
                prepare(spec), tmp / tag, executor="ray", tracking_uri=uri, on_progress=timeline
            )
        wall = time.perf_counter() - t0
        ray_init_s = ray_init[0]
    finally:
        if warm:
            ray.shutdown()
        if previous is None:
            os.environ.pop("GOLDILOCKS_COMPILE_CACHE", None)
        else:
            os.environ["GOLDILOCKS_COMPILE_CACHE"] = previous
        get_settings.cache_clear()
    return {
        "wall_s": wall,
        "mlflow_runs": count_runs(uri, EXPERIMENT),
        "ray_init_s": ray_init_s,
        "fit_s": sweep["timing"]["train_s"],  # tuner.fit(): worker start, compile, train
        "compile_s": sweep["timing"]["compile_s"],  # the driver's ahead (if any) + trials'
        "trial_compiles": trial_compiles(tmp / tag),
        "trials_train_s": sweep["timing"]["trials_train_s"],
        "log_s": sweep["timing"]["log_s"],
        **timeline.summary(),
        "best_lr": winner_lr(sweep),
    }


# --------------------------------------------------------------------------- (c) inline
def run_inline(spec: SweepSpec, tmp: Path) -> dict:
    """The same sweep in this process, no Ray."""
    import jax

    jax.block_until_ready(jax.numpy.zeros(1) + 1)  # start JAX's CPU client (after Ray's forks)
    forget_programs()  # (c) starts cold, whatever this process compiled before
    uri = tracking_uri(tmp / "c-mlflow")
    t0 = time.perf_counter()
    timeline = Timeline(t0)
    sweep = run_sweep(
        prepare(spec), tmp / "c", executor="inline", tracking_uri=uri, on_progress=timeline
    )
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "mlflow_runs": count_runs(uri, EXPERIMENT),
        "compile_s": sweep["timing"]["compile_s"],
        "train_s": sweep["timing"]["train_s"],
        "trials_train_s": sweep["timing"]["trials_train_s"],
        "log_s": sweep["timing"]["log_s"],
        **timeline.summary(),
        "best_lr": winner_lr(sweep),
    }


# --------------------------------------------------------------------------- logging
def measure_logging(lanes: int, steps: int, tmp: Path) -> dict:
    """A wide inline sweep: a warm-up run (compiles), then with tracking, then without."""
    spec = parse_spec(spec_dict(lanes, steps, LOGGING_EVAL_EVERY))
    # a Prepared runs once (its planner hands out each population once): one per run
    run_sweep(prepare(spec), tmp / "log-warmup", executor="inline", track=False)
    t0 = time.perf_counter()
    uri = tracking_uri(tmp / "log-mlflow")
    tracked = run_sweep(prepare(spec), tmp / "log-tracked", executor="inline", tracking_uri=uri)
    tracked_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_sweep(prepare(spec), tmp / "log-untracked", executor="inline", track=False)
    untracked_s = time.perf_counter() - t0
    timing = tracked["timing"]
    return {
        "logging_lanes": lanes,
        "logging_steps": steps,
        "logging_eval_every": LOGGING_EVAL_EVERY,
        "logging_points": lanes * (-(-steps // LOGGING_EVAL_EVERY) + 1),  # lane x eval point
        "logging_share": timing["log_s"] / timing["wall_s"],
        "logging_log_s": timing["log_s"],
        "logging_report_wall_s": timing["wall_s"],
        "logging_tracked_s": tracked_s,
        "logging_untracked_s": untracked_s,
        "logging_blocking_s": tracked_s - untracked_s,
    }


# --------------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="100 steps, 8 lanes (all variants)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--lanes", type=int, help="learning rates, every variant (default 64; quick 8)")
    p.add_argument("--steps", type=int, help="training steps (default 500; quick 100)")
    p.add_argument(
        "--overhead-only",
        action="store_true",
        help="only (a) and (c): how the Ray overhead amortises over longer sweeps (--steps)",
    )
    args = p.parse_args(argv)
    args.lanes = args.lanes or (8 if args.quick else FULL_LANES)
    args.steps = args.steps or (100 if args.quick else FULL_STEPS)
    args.logging_lanes = 64 if args.quick else 256
    args.logging_steps = 50 if args.quick else args.steps
    return args


def report(r: dict) -> None:
    """The human-readable table, on stderr."""
    out = lambda s="": print(s, file=sys.stderr)  # noqa: E731
    out(f"{r['lanes']} Adam LRs x {r['steps']} steps, batch {BATCH}, eval every {EVAL_EVERY}; "
        f"digits MLP {HIDDEN}; MLflow on SQLite; {r['cpus']} CPUs")  # fmt: skip
    out(f"{'':28}{'wall s':>9}{'ray init s':>12}{'fit s':>9}{'log s':>8}{'best LR':>10}")
    a, b, c = r["goldilocks"], r["naive"], r["inline"]
    rows = [
        ("(a) goldilocks, Ray", a["wall_s"], a["ray_init_s"], a["fit_s"], a["log_s"], a["best_lr"]),
        ("(b) naive Ray Tune", b["wall_s"], b["ray_init_s"], b["fit_s"], None, b["best_lr"]),
        ("(c) goldilocks, inline", c["wall_s"], None, c["train_s"], c["log_s"], c["best_lr"]),
    ]
    f = lambda v, w, p=2: f"{'-':>{w}}" if v is None else f"{v:{w}.{p}f}"  # noqa: E731
    for name, wall, init, fit, log_s, lr in rows:
        lr_s = f"{'-':>10}" if lr is None else f"{lr:10.2e}"
        out(f"{name:28}{f(wall, 9)}{f(init, 12)}{f(fit, 9)}{f(log_s, 8)}{lr_s}")
    ok = lambda good: "ok" if good else "MISSED"  # noqa: E731
    out(f"speedup vs naive    {r['speedup_vs_naive']:6.2f}x   target >= {TARGET_SPEEDUP:g}x "
        f"({ok(r['speedup_vs_naive'] >= TARGET_SPEEDUP)})")  # fmt: skip
    out(f"overhead vs inline  {r['overhead_vs_inline']:6.2f}x   target <= {TARGET_OVERHEAD:g}x "
        f"({ok(r['overhead_vs_inline'] <= TARGET_OVERHEAD)})")  # fmt: skip
    out(f"overhead, Ray up    {r['overhead_warm']:6.2f}x   target <= {TARGET_OVERHEAD_WARM:g}x "
        f"({ok(r['overhead_warm'] <= TARGET_OVERHEAD_WARM)})")  # fmt: skip
    out(f"train ratio         {r['train_ratio']:6.2f}x   target <= {TARGET_TRAIN_RATIO:g}x "
        f"({ok(r['train_ratio'] <= TARGET_TRAIN_RATIO)})")  # fmt: skip
    out(f"logging share       {100 * r['logging_share']:6.1f} %   target < "
        f"{100 * TARGET_LOG_SHARE:g} % ({ok(r['logging_share'] < TARGET_LOG_SHARE)}); "
        f"{r['logging_lanes']} lanes x {r['logging_steps']} steps, eval every "
        f"{r['logging_eval_every']}: log_s {r['logging_log_s']:.2f} of {r['logging_report_wall_s']:.2f} s")  # fmt: skip
    out(f"logging blocking    {r['logging_blocking_s']:6.2f} s   (tracked {r['logging_tracked_s']:.2f} s "
        f"- untracked {r['logging_untracked_s']:.2f} s); a fresh SQLite store alone: "
        f"{r['mlflow_store_init_s']:.2f} s")  # fmt: skip
    if r["lanes"] < FULL_LANES:
        out(f"note: the targets are set for the full sweep ({FULL_LANES} lanes); with "
            f"{r['lanes']} lanes the naive baseline runs only {r['lanes'] // 2} rounds of trials")  # fmt: skip
    stamp = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for name, v in (("(a)", a), ("(c)", c)):
        out(f"{name} timeline, s since start: trials started {stamp(v['trials_started_at_s'])}, "
            f"first chunk done {stamp(v['first_chunk_at_s'])}, all steps done "
            f"{stamp(v['all_steps_at_s'])}, end {v['wall_s']:.2f}")  # fmt: skip
    out(f"(a) compile {a['compile_s']:.2f} s (the driver's ahead, if any, and the warm "
        f"trainer's; programs compiled in the trials: {a['trial_compiles']})")  # fmt: skip
    out(f"(c) inline compile {c['compile_s']:.2f} s, train {c['train_s']:.2f} s")
    ts = b["trial_s"]
    out(f"(b) {len(ts)} trials, s inside the trainable: mean {np.mean(ts):.2f}, sum "
        f"{np.sum(ts):.2f}; the rest of 2 slots x fit {b['fit_s']:.2f} s is worker start, "
        f"imports and Tune/MLflow bookkeeping")  # fmt: skip
    out(f"MLflow runs logged: (a) {a['mlflow_runs']}, (b) {b['mlflow_runs']}, "
        f"(c) {c['mlflow_runs']}")  # fmt: skip
    out(f"best LR: {'agree' if r['agree'] else 'DISAGREE'} (grid index a {r['best_index_a']}, "
        f"c {r['best_index_c']}, b {r['best_index_b']})")  # fmt: skip


@contextlib.contextmanager
def stdout_to_stderr():
    """Tune prints its experiment tables on stdout (even with verbose=0): keep stdout for JSON."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def ray_ratios(a: dict, warm: dict, inline: dict) -> dict:
    """Ray against inline: the trials' own training seconds (no worker start, no compiles),
    the whole sweep with Ray's start, and the whole sweep on a Ray already up."""
    return {
        "train_ratio": a["trials_train_s"] / inline["trials_train_s"],
        "overhead_warm": warm["wall_s"] / inline["wall_s"],
    }


def overhead_only(args: argparse.Namespace, spec: SweepSpec) -> dict:
    """(a) and (c) alone: the fixed Ray start-up against a sweep of `args.steps` steps."""
    with stdout_to_stderr(), tempfile.TemporaryDirectory(prefix="goldilocks-overhead-") as tmp:
        warm_up(Path(tmp), spec)
        a = run_goldilocks(spec, Path(tmp))
        aw = run_goldilocks(spec, Path(tmp), warm=True)
        c = run_inline(spec, Path(tmp))
    result = {
        "lanes": args.lanes,
        "steps": args.steps,
        "goldilocks_s": a["wall_s"],
        "inline_s": c["wall_s"],
        "overhead_vs_inline": a["wall_s"] / c["wall_s"],
        **ray_ratios(a, aw, c),
        "goldilocks_warm": aw,
        "goldilocks": a,
        "inline": c,
        "cpus": os.cpu_count(),
    }
    print(
        f"{args.lanes} Adam LRs x {args.steps} steps: (a) Ray {a['wall_s']:.2f} s "
        f"(trials started at {a['trials_started_at_s']:.2f} s, compiled by the trials: "
        f"{a['trial_compiles']}), (c) inline {c['wall_s']:.2f} s; "
        f"overhead {result['overhead_vs_inline']:.2f}x (target <= {TARGET_OVERHEAD:g}x)",
        file=sys.stderr,
    )
    if args.json:
        print(json.dumps(result))
    return result


def main(argv=None) -> dict:
    args = parse_args(argv)
    spec = parse_spec(spec_dict(args.lanes, args.steps))
    if args.overhead_only:
        return overhead_only(args, spec)
    lrs = learning_rates(spec)
    load_before, cpu0 = os.getloadavg(), time.process_time()
    with stdout_to_stderr(), tempfile.TemporaryDirectory(prefix="goldilocks-vs-naive-") as tmp:
        store_init_s = warm_up(Path(tmp), spec)
        a = run_goldilocks(spec, Path(tmp))
        aw = run_goldilocks(spec, Path(tmp), warm=True)
        b_uri = tracking_uri(Path(tmp) / "b-mlflow")
        b = run_naive(spec, Path(tmp), b_uri, hidden=HIDDEN, batch_size=BATCH, seed=SEED)
        b["mlflow_runs"] = count_runs(b_uri, EXPERIMENT)
        c = run_inline(spec, Path(tmp))
        logging_ = measure_logging(args.logging_lanes, args.logging_steps, Path(tmp))
    ia, ib, ic = (grid_index(lrs, v["best_lr"]) for v in (a, b, c))
    agree = None not in (ia, ib, ic) and ia == ic and abs(ib - ia) <= 1
    result = {
        "lanes": args.lanes,
        "steps": args.steps,
        "naive_lanes": b["lanes"],
        "goldilocks_s": a["wall_s"],
        "naive_ray_s": b["wall_s"],
        "inline_s": c["wall_s"],
        "speedup_vs_naive": b["wall_s"] / a["wall_s"],
        "overhead_vs_inline": a["wall_s"] / c["wall_s"],
        **ray_ratios(a, aw, c),
        "goldilocks_log_s": a["log_s"],
        "inline_log_s": c["log_s"],
        **logging_,
        "mlflow_store_init_s": store_init_s,
        "best_lr_goldilocks": a["best_lr"],
        "best_lr_inline": c["best_lr"],
        "best_lr_naive": b["best_lr"],
        "best_index_a": ia,
        "best_index_b": ib,
        "best_index_c": ic,
        "agree": agree,
        "targets": {
            "speedup_vs_naive": TARGET_SPEEDUP,
            "overhead_vs_inline": TARGET_OVERHEAD,
            "overhead_warm": TARGET_OVERHEAD_WARM,
            "train_ratio": TARGET_TRAIN_RATIO,
            "logging_share": TARGET_LOG_SHARE,
        },  # fmt: skip
        "goldilocks": a,
        "goldilocks_warm": aw,
        "naive": b,
        "inline": c,
        "cpus": os.cpu_count(),
        # The machine is shared: the load around the run says how much to trust the numbers.
        "loadavg_before": load_before[0],
        "loadavg_after": os.getloadavg()[0],
        "driver_cpu_s": time.process_time() - cpu0,
        "ray": ray.__version__,
    }
    report(result)
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
