"""Population vs loop beyond the MLP: a transformer, a BatchNorm ResNet and a plain CNN.

Is one vmapped program still faster than training each learning rate alone when the model is
not a stack of matmuls? Three architectures, each swept over log-spaced Adam learning rates
(1e-4 to 1e-1), constant schedule, one init seed for every lane:

- transformer: the char transformer of examples/char_transformer.yaml (d_model 32, 2 layers,
  4 heads, no dropout) on `pydoc_topics` windows of 32 tokens, batch 32;
- resnet: `ResNetSpec(channels=[8, 16])` (BatchNorm: every lane carries its own running
  statistics) on digits as 8x8x1 images, batch 64;
- cnn: `CNNSpec(channels=[8, 16])` (no BatchNorm) on digits, batch 64.

What is compared, for each architecture, lane count and lane width:

(a) population: `train_population` over all the lanes, in slices of `width` lanes (the lane
    width, GOLDILOCKS_CPU_LANE_WIDTH; a sweep's default on a CPU is 8).
(b) loop: the same program with ONE lane, `train_population` once per learning rate, one after
    the other (the same init, the same minibatches, the same evaluations every `eval_every`
    steps, the same divergence bookkeeping), so the only difference is the lane axis.
    At width 1, (a) runs the very program (b) runs, slice after slice within each chunk: what
    separates them then is only (b)'s per-call costs (an init, evaluations, host copies per
    lane), not vmap. Under vmap a convolution whose kernel and input both carry the lane axis
    (every layer after the first) becomes a grouped one (`feature_group_count` = width), and
    its kernel gradient a `batch_group_count` one: how fast XLA runs those decides the conv rows.

Both exclude compilation: each variant first trains a warm-up population of one slice
(a) or of one lane (b), which compiles every program the timed run uses (checked: the timed run
must compile nothing), then the timed run's wall time is taken (best of `--repeats`). Each
variant runs in a fresh subprocess, which reports its peak RSS (`ru_maxrss`) and the RSS it
had before training (imports, data, JAX started): `peak_rss_mb` (compilation included) and,
with the peak reset after the warm-up (/proc/self/clear_refs), the timed run's own peak
`run_peak_mb` and its growth `run_rss_mb` over the RSS it started from (`loop_*` alike).
The evaluation uses the first 256 validation rows (2907 transformer windows would cost more
than the training itself; the loop pays the same evaluation per lane).

The loop's time does not depend on the population's width, so it is measured once per
architecture and lane count. `speedup` is loop_s / population_s: above 1 the population wins.
A check compares every lane's final training loss between (a) and (b) (the same program, so
they should agree up to float reassociation): `stable_rel_diff` over the lanes at LR <= 1e-2
(about 1e-6), `max_rel_diff` over every lane that did not diverge (at the highest LRs float
differences grow chaotically over the steps: 1e-2 there is not a bug).

The table goes to stderr; `--json` prints one JSON object per case (model, lanes, width) on
stdout, with `best_width` true for the fastest width of its model and lane count.

    python benchmarks/architectures.py [--models transformer resnet cnn] [--lanes 64 256]
        [--steps 50] [--widths 1 8 32] [--repeats 1] [--json]

Without `--widths`: GOLDILOCKS_CPU_LANE_WIDTH if set, else 8 for the transformer and 1, 8
and 32 for the convolutional models (vmapped convolutions may lower badly on a CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere, installed or not
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

MODELS = ("transformer", "resnet", "cnn")
LR_RANGE = (1e-4, 1e-1)
SEED = 0
EVAL_EVERY = 25
VAL_ROWS = 256
STABLE_LR = 1e-2  # lanes at or below it must agree between (a) and (b)
DEFAULT_WIDTHS = {"transformer": [8], "resnet": [1, 8, 32], "cnn": [1, 8, 32]}
WIDTH_ENV = "GOLDILOCKS_CPU_LANE_WIDTH"


# --------------------------------------------------------------------------- the cases
def case(model: str, steps: int):
    """(data, structure) of one architecture, the validation set cut to VAL_ROWS rows."""
    from models.specs import CNNSpec, ResNetSpec, TransformerSpec
    from sweeps.core.data import load_dataset
    from sweeps.core.program import Structure

    if model == "transformer":
        data = load_dataset(name="pydoc_topics", block_size=32, val_fraction=0.1)
        spec = TransformerSpec(name="transformer", d_model=32, n_layers=2, n_heads=4)
        batch = 32
    elif model == "resnet":
        data = load_dataset(name="digits")
        spec, batch = ResNetSpec(name="resnet", channels=[8, 16]), 64
    elif model == "cnn":
        data = load_dataset(name="digits")
        spec, batch = CNNSpec(name="cnn", channels=[8, 16]), 64
    else:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    data = dataclasses.replace(data, x_val=data.x_val[:VAL_ROWS], y_val=data.y_val[:VAL_ROWS])
    structure = Structure(
        model=spec,
        loss="cross_entropy",
        optimizer="adam",
        schedule="constant",
        batch_size=batch,
        steps=steps,
        eval_every=min(EVAL_EVERY, steps),
    )
    return data, structure


def learning_rates(lanes: int) -> np.ndarray:
    return np.logspace(np.log10(LR_RANGE[0]), np.log10(LR_RANGE[1]), lanes).astype(np.float32)


# --------------------------------------------------------------------------- child process
def _rss_mb() -> float:
    """This process's peak RSS so far (compilation included)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _status_mb(field: str) -> float | None:
    """VmRSS (now) or VmHWM (peak since the last reset) from /proc, None where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the timed run's own peak is seen."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _train(structure, data, lrs: np.ndarray, width: int | None = None):
    """One `train_population` run at slice width `width`: (wall s, CPU s, Timing, last
    EvalPoint)."""
    from benchmarks.common import train_once

    return train_once(structure, data, lrs, SEED, width=width)


def child(args: argparse.Namespace) -> dict:
    """One variant in this (fresh) process: warm-up, then the timed run(s)."""
    width = args.width if args.variant == "population" else 1
    import jax

    from sweeps.core.population import lane_width

    jax.block_until_ready(jax.numpy.zeros(1) + 1)  # JAX's CPU client up before the base RSS
    data, structure = case(args.model, args.steps)
    lrs = learning_rates(args.lanes)
    base_rss = _rss_mb()
    used = lane_width(len(lrs), width)
    # Warm-up: one slice of the population (the same shapes: the same compiled programs).
    _, _, warm, _ = _train(structure, data, lrs[:used], width)
    before_run = _status_mb("VmRSS")
    resettable = _reset_peak()
    best = None
    for _ in range(args.repeats):
        if args.variant == "population":
            wall, cpu, timing, last = _train(structure, data, lrs, width)
            finals, compiles = last.train_loss, timing.compiles
            diverged = last.diverged_at
        else:
            wall = cpu = 0.0
            compiles, finals, diverged = 0, [], []
            for lr in lrs:
                w, c, timing, last = _train(structure, data, np.array([lr]), 1)
                wall, cpu, compiles = wall + w, cpu + c, compiles + timing.compiles
                finals.append(last.train_loss[0])
                diverged.append(last.diverged_at[0])
        if best is None or wall < best["seconds"]:
            best = {"seconds": wall, "cpu_s": cpu, "compiles": compiles,
                    "final_loss": [float(v) for v in finals],
                    "diverged_at": [int(v) for v in diverged]}  # fmt: skip
    return {
        **best,
        "variant": args.variant,
        "model": args.model,
        "lanes": args.lanes,
        "steps": args.steps,
        "width": used,
        "batch": structure.batch_size,
        "compile_s": warm.compile_s,
        "peak_rss_mb": _rss_mb(),
        "base_rss_mb": base_rss,
        # The timed run(s) alone: peak RSS, and its growth over the RSS they started from.
        "run_peak_mb": _status_mb("VmHWM") if resettable else None,
        "run_rss_mb": _status_mb("VmHWM") - before_run if resettable and before_run else None,
    }


def spawn(variant: str, model: str, lanes: int, steps: int, width: int, repeats: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", variant,
           "--models", model, "--lanes", str(lanes), "--steps", str(steps),
           "--widths", str(width), "--repeats", str(repeats)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if out["compiles"]:
        raise RuntimeError(f"{variant} {model}: the timed run compiled {out['compiles']} programs")
    return out


# --------------------------------------------------------------------------- the parent
def agreement(pop: dict, loop: dict, lrs: np.ndarray) -> tuple[float, float]:
    """Max relative difference of the final training losses over the lanes live in both: all
    of them, and those at a stable LR (<= STABLE_LR; above it a few ulps of reassociation grow
    over the steps, so those lanes drift apart without anything being wrong)."""
    a, b = np.asarray(pop["final_loss"]), np.asarray(loop["final_loss"])
    live = (np.asarray(pop["diverged_at"]) < 0) & (np.asarray(loop["diverged_at"]) < 0)
    live &= np.isfinite(a) & np.isfinite(b)
    rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-12)
    worst = lambda mask: float(np.max(rel[mask])) if mask.any() else float("nan")  # noqa: E731
    return worst(live), worst(live & (lrs <= STABLE_LR))


def widths_for(model: str, given: list[int] | None) -> list[int]:
    if given:
        return given
    if os.environ.get(WIDTH_ENV):
        return [int(os.environ[WIDTH_ENV])]
    return DEFAULT_WIDTHS[model]


def run_cases(args: argparse.Namespace) -> list[dict]:
    rows = []
    for model in args.models:
        for lanes in args.lanes:
            say(f"{model}, {lanes} lanes x {args.steps} steps: loop ...")
            loop = spawn("loop", model, lanes, args.steps, 1, args.repeats)
            group = []
            for width in widths_for(model, args.widths):
                say(f"{model}, {lanes} lanes: population at width {width} ...")
                pop = spawn("population", model, lanes, args.steps, width, args.repeats)
                every, stable = agreement(pop, loop, learning_rates(lanes))
                group.append({
                    "model": model,
                    "lanes": lanes,
                    "width": pop["width"],
                    "steps": args.steps,
                    "batch": pop["batch"],
                    "population_s": pop["seconds"],
                    "loop_s": loop["seconds"],
                    "speedup": loop["seconds"] / pop["seconds"],
                    "population_cpu_s": pop["cpu_s"],
                    "loop_cpu_s": loop["cpu_s"],
                    "peak_rss_mb": pop["peak_rss_mb"],
                    "loop_peak_rss_mb": loop["peak_rss_mb"],
                    "rss_before_training_mb": pop["base_rss_mb"],
                    "run_peak_mb": pop["run_peak_mb"],
                    "run_rss_mb": pop["run_rss_mb"],
                    "loop_run_peak_mb": loop["run_peak_mb"],
                    "loop_run_rss_mb": loop["run_rss_mb"],
                    "population_compile_s": pop["compile_s"],
                    "loop_compile_s": loop["compile_s"],
                    "diverged_lanes": int(np.sum(np.asarray(pop["diverged_at"]) >= 0)),
                    "max_rel_diff": every,
                    "stable_rel_diff": stable,
                })  # fmt: skip
            fastest = min(r["population_s"] for r in group)
            for r in group:
                r["best_width"] = r["population_s"] == fastest
            rows += group
    return rows


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def report(rows: list[dict], meta: dict) -> None:
    say(f"\nbackend {meta['backend']}, {meta['cpus']} CPUs, load {meta['load_before']:.1f} -> "
        f"{meta['load_after']:.1f}; {meta['steps']} steps, eval every "
        f"{min(EVAL_EVERY, meta['steps'])} on {VAL_ROWS} val rows; compile excluded")  # fmt: skip
    say(f"{'':24}{'wall s':>17}{'':9}{'CPU s':>16}{'peak RSS MB':>18}{'run +MB':>14}")
    say(f"{'model':12}{'lanes':>6}{'width':>6}{'pop':>8}{'loop':>9}{'speedup':>9}"
        f"{'pop':>8}{'loop':>8}{'pop':>9}{'loop':>9}{'pop':>7}{'loop':>7}{'rel diff':>10}")  # fmt: skip
    mb = lambda v: f"{'-':>7}" if v is None else f"{v:7.0f}"  # noqa: E731
    for r in rows:
        several = sum((q["model"], q["lanes"]) == (r["model"], r["lanes"]) for q in rows) > 1
        mark = " *" if r["best_width"] and several else ""
        say(f"{r['model']:12}{r['lanes']:6}{r['width']:6}{r['population_s']:8.2f}"
            f"{r['loop_s']:9.2f}{r['speedup']:8.2f}x{r['population_cpu_s']:8.2f}"
            f"{r['loop_cpu_s']:8.2f}{r['peak_rss_mb']:9.0f}{r['loop_peak_rss_mb']:9.0f}"
            f"{mb(r['run_rss_mb'])}{mb(r['loop_run_rss_mb'])}{r['stable_rel_diff']:10.1e}{mark}")  # fmt: skip
    say(
        "speedup = loop wall / population wall; peak RSS: the process's (compilation included); "
        "run +MB: the timed run's peak over the RSS it started from; rel diff: max relative "
        "difference of the lanes' final training loss, population vs loop; * the fastest width"
    )


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--lanes", nargs="+", type=int, default=[64], help="lane counts (default 64)")
    p.add_argument("--steps", type=int, default=50, help="training steps (default 50)")
    p.add_argument("--widths", nargs="+", type=int, help="lane widths for the population")
    p.add_argument("--repeats", type=int, default=1, help="timed warm runs, best kept")
    p.add_argument("--json", action="store_true", help="one JSON object per case on stdout")
    p.add_argument("--child", choices=("population", "loop"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:  # one model, one lane count, one width
        args.variant, args.model = args.child, args.models[0]
        args.lanes, args.width = args.lanes[0], (args.widths or [8])[0]
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return []
    load_before = os.getloadavg()[0]
    rows = run_cases(args)
    import jax

    meta = {"backend": jax.default_backend(), "cpus": os.cpu_count(), "steps": args.steps,
            "load_before": load_before, "load_after": os.getloadavg()[0]}  # fmt: skip
    report(rows, meta)
    if args.json:
        for r in rows:
            print(json.dumps({**r, **{k: meta[k] for k in ("backend", "cpus")}}))
    return rows


if __name__ == "__main__":
    main()
