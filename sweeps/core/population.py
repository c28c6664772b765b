"""The population trainer: many lanes, one compiled program (sweeps/core/program.py).

Every lane of a population trains in one XLA program per slice: a chunk of `eval_every`
steps, then an evaluation of every lane on the validation set. The minibatch is gathered once
per step, outside the vmap, and shared by all lanes: the first layer becomes one wide matmul.

On a CPU a population wider than its slice width is cut into slices, and the slices train
several at a time, one per thread (`slice_threads`): XLA's CPU runtime keeps one small program
on about one core, so on two cores two slices take the time of one. Each slice is its own
program run: the results do not depend on how many run at once.

`train_population` is a generator: it yields an `EvalPoint` after each chunk, so callers
show progress, log and checkpoint as training goes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sweeps.core import lane_width as tuner
from sweeps.core.batches import BatchPlan, chunk_inputs
from sweeps.core.data import Dataset
from sweeps.core.program import (
    LaneHyperparams,
    LaneState,
    Program,
    Structure,
    get_program,
    make_hyperparams,
)
from sweeps.core.prune import LIVE, Layout, PruneState, apply_rung, pad_tree, take_host


@dataclass
class EvalPoint:
    """What one chunk produced, as host numpy arrays over the lanes."""

    step: int  # steps done
    train_loss: np.ndarray  # mean minibatch loss over the chunk (NaN once frozen)
    step_losses: np.ndarray  # (L, chunk) every step's minibatch loss, NaN where masked
    val_loss: np.ndarray
    val_metrics: dict[str, np.ndarray]
    learning_rate: np.ndarray  # the scheduled LR at the chunk's last step
    diverged_at: np.ndarray
    spiked: np.ndarray
    init_loss: np.ndarray | None  # each lane's first minibatch loss (None before training)
    # Device LaneStates (one per slice) after this chunk, for checkpoints. Valid only until
    # the generator resumes: the next chunk donates these buffers.
    state: Any = None
    width: int = 0  # lanes per compiled slice
    threads: int = 1  # slices trained at once
    # search.prune: each lane's rung (-1: training) and step-0 validation loss; a pruned
    # lane's rows after its rung are NaN. With `state`, what a checkpoint must keep.
    prune: PruneState | None = None


@dataclass
class Timing:
    compile_s: float = 0.0
    train_s: float = 0.0
    compiles: int = 0  # programs compiled here (0 when every one came precompiled)
    tune_s: float = 0.0  # the driver measuring lane widths (sweeps/core/lane_width.py)


GPU_WIDTH = 1024  # an accelerator trains a population in one slice up to this many lanes


def lane_width(num_lanes: int, cap: int) -> int:
    """Lanes per compiled slice: at most `cap`, the population cut into equal slices (10 lanes
    at cap 8 are 5 + 5, not 8 + 2)."""
    return tuner.slice_width(num_lanes, cap)


def default_width(structure: Structure) -> int:
    """The slice width when none is given: on an accelerator the whole population (up to
    `GPU_WIDTH`); on a CPU the default rule (sweeps/core/lane_width.py)."""
    return tuner.default_cpu_width(structure) if jax.default_backend() == "cpu" else GPU_WIDTH


def slice_threads(threads: int | None = None) -> int:
    """Slices trained at once: on a CPU `threads` if given, else the cores this process may run
    on (a Ray trial is told its whole CPUs); elsewhere 1 (one device runs one program at a
    time)."""
    if jax.default_backend() != "cpu":
        return 1
    if threads:
        return threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _each_slice(threads: int, fn, calls: list[tuple]) -> list:
    """[fn(*args) for args in calls], `threads` at a time. One thread: dispatched one after the
    other without waiting (JAX's asynchronous dispatch); several: each waits for its own
    program, so they run side by side (the CPU client would otherwise run them in turn)."""
    threads = min(threads, len(calls))
    if threads <= 1:
        return [fn(*args) for args in calls]
    if threads not in _POOLS:
        _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="slice")
    return list(_POOLS[threads].map(lambda args: jax.block_until_ready(fn(*args)), calls))


# --------------------------------------------------------------------------- lane widths
def time_widths(
    structure: Structure, data: Dataset, widths: list[int], threads: int = 1
) -> dict[int, float]:
    """Seconds per lane-step of one chunk at each width, `threads` slices at once: the chunk
    programs a sweep at these widths runs, compiled side by side (XLA compiles outside the
    GIL), warmed up, then timed round-robin, best of a few rounds, with nothing else running."""
    from concurrent.futures import ThreadPoolExecutor

    prog = get_program(structure, data)
    x, y, xv, yv = _device_data(data)
    inputs = _first_chunk(structure, data)
    one = _init_inputs(np.zeros(1, np.int64), [(0, 1)], 1)
    hp1 = _measuring_hyperparams(prog, 1)
    lane = prog.compiled("init", one[0], one[1][0], hp1)(one[0], one[1][0], hp1)
    # A width's state is one lane repeated: the timing does not depend on the numbers, and
    # this spares compiling an init program per width.
    states = {w: jax.tree.map(lambda a, w=w: jnp.repeat(a, w, axis=0), lane) for w in widths}
    hps = {w: _measuring_hyperparams(prog, w) for w in widths}

    def compile_chunk(w: int):
        return prog.compiled("chunk", states[w], hps[w], x, y, xv, yv, *inputs)

    with ThreadPoolExecutor(max_workers=max(1, min(len(widths), os.cpu_count() or 1))) as pool:
        runs = dict(zip(widths, pool.map(compile_chunk, widths), strict=True))

    def timed(w: int):
        # one state per thread: the chunk donates its state, so each copy is fed the one it
        # returned
        box = [jax.tree.map(jnp.copy, states[w]) for _ in range(threads)]

        def once() -> None:
            calls = [(st, hps[w], x, y, xv, yv, *inputs) for st in box]
            results = _each_slice(threads, runs[w], calls)
            box[:] = [r[0] for r in results]
            jax.block_until_ready(results)

        once()  # warm-up
        return once

    seconds = tuner.best_of({w: timed(w) for w in widths})
    return {w: t / (threads * w * structure.eval_every) for w, t in seconds.items()}


def _measuring_hyperparams(prog: Program, width: int) -> LaneHyperparams:
    return make_hyperparams(
        np.full(width, 1e-3),
        {k: np.full(width, v) for k, v in prog.optimizer.defaults.items()},
        {k: np.full(width, v) for k, v in prog.schedule.defaults.items()},
    )


# --------------------------------------------------------------------------- the driver
def _num_lanes(hyperparams: LaneHyperparams) -> int:
    return int(np.shape(hyperparams.learning_rate)[0])


def _lane_slices(hyperparams: LaneHyperparams, cap: int, exact: bool = False):
    """The population cut into slices of at most `cap` lanes (`exact`: of `cap` lanes, the
    last one padded): (width, bounds, hyperparams)."""
    n = _num_lanes(hyperparams)
    width = cap if exact else lane_width(n, cap)
    bounds = [(lo, min(lo + width, n)) for lo in range(0, n, width)]
    return n, width, bounds, [pad_tree(hyperparams, lo, hi, width) for lo, hi in bounds]


def _init_inputs(seeds: np.ndarray, bounds, width: int):
    """One init key per distinct seed, and each slice's lanes' index into those keys.

    The keys are padded to the slice width (repeating the first), so the init program's shape
    does not depend on how many seeds a population has: another population of the same width
    reuses it whatever its seeds."""
    distinct, seed_index = np.unique(np.asarray(seeds), return_inverse=True)
    pad = max(0, width - len(distinct))
    distinct = np.concatenate([distinct, np.repeat(distinct[:1], pad)])
    keys = jax.vmap(jax.random.key)(jnp.asarray(distinct, jnp.uint32))
    index = jnp.asarray(seed_index, jnp.int32)
    return keys, [pad_tree(index, lo, hi, width) for lo, hi in bounds]


def _chunk_inputs(plan: BatchPlan, step0: int, structure: Structure):
    return chunk_inputs(plan, step0, structure.eval_every, structure.steps, structure.batch_size)


def _first_chunk(structure: Structure, data: Dataset):
    """A chunk's inputs with the shapes every chunk has: what compiling and timing need."""
    plan = BatchPlan(data.n_train, structure.batch_size, structure.steps, 0)
    return _chunk_inputs(plan, 0, structure)[1]


def _device_data(data: Dataset):
    return (jnp.asarray(data.x_train), jnp.asarray(data.y_train),
            jnp.asarray(data.x_val), jnp.asarray(data.y_val))  # fmt: skip


def compile_population(
    structure: Structure,
    data: Dataset,
    hyperparams: LaneHyperparams,
    seeds: np.ndarray,
    *,
    width: int | None = None,
    threads: int | None = None,
) -> Program:
    """Compile the programs `train_population` will run for this population at slice width
    `width` (default: `default_width`), and no more. (`threads` is accepted for symmetry with
    `train_population`; the programs do not depend on it.)

    The same calls with the same argument shapes, so the keys match; nothing runs."""
    prog = get_program(structure, data)
    n, width, bounds, hp_slices = _lane_slices(hyperparams, width or default_width(structure))
    keys, idx = _init_inputs(seeds, bounds, width)
    inputs = _first_chunk(structure, data)
    compile_first(prog, (keys, idx[0], hp_slices[0]), _device_data(data), inputs)
    return prog


def compile_first(
    prog: Program, init_args: tuple, arrays: tuple, inputs: tuple, timing: Timing | None = None
) -> None:
    """A slice's init, eval and chunk programs, compiled side by side
    (`Program.compile_together`; the later two from the shapes of the state the init makes),
    with the argument shapes `train_population` calls them with: `init_args` (keys, seed
    index, hyperparameters), the data's device `arrays` and a chunk's `inputs`."""
    if prog.has("init", *init_args):  # compiled with its eval and chunk: nothing to trace
        return
    keys, index, hp = init_args
    x, y, xv, yv = arrays
    state = prog.state_shape(keys, index, hp)
    count, seconds = prog.compile_together(
        [("init", init_args), ("eval", (state, xv, yv)),
         ("chunk", (state, hp, x, y, xv, yv, *inputs))]
    )  # fmt: skip
    if timing is not None:
        timing.compile_s += seconds
        timing.compiles += count


def probe_programs(structure: Structure, data: Dataset, width: int) -> tuple[list, float]:
    """The init, eval and chunk programs of one slice of `width` lanes, compiled as
    `train_population` compiles them (the same keys: a later population at this width reuses
    them), and the device bytes one lane's state and hyperparameters hold: what
    sweeps/core/memory.py sizes a population from. Only the slice's init runs."""
    prog = get_program(structure, data)
    hp = _measuring_hyperparams(prog, width)
    x, y, xv, yv = _device_data(data)
    keys, idx = _init_inputs(np.zeros(width, np.int64), [(0, width)], width)
    inputs = _first_chunk(structure, data)
    compile_first(prog, (keys, idx[0], hp), (x, y, xv, yv), inputs)
    init = prog.compiled("init", keys, idx[0], hp)
    state = init(keys, idx[0], hp)
    evaluate = prog.compiled("eval", state, xv, yv)
    chunk = prog.compiled("chunk", state, hp, x, y, xv, yv, *inputs)
    lane_bytes = sum(a.nbytes for a in jax.tree.leaves((state, hp))) / width
    return [init, evaluate, chunk], float(lane_bytes)


def train_population(
    structure: Structure,
    data: Dataset,
    hyperparams: LaneHyperparams,
    seeds: np.ndarray,
    *,
    data_seed: int = 0,
    start: list[LaneState] | None = None,
    start_step: int = 0,
    timing: Timing | None = None,
    width: int | None = None,
    exact: bool = False,
    threads: int | None = None,
    rungs: list[int] | None = None,
    groups: np.ndarray | None = None,
    pruned: PruneState | None = None,
) -> Iterator[EvalPoint]:
    """Train every lane; yield an EvalPoint at step 0 (unless resuming) and after each chunk.

    `seeds` (L,) are the lanes' init seeds. `start`/`start_step` resume from a checkpoint
    (the `state` of an earlier EvalPoint, as a list of slices, and its step; `pruned`, its
    `prune`). `width`: lanes per compiled slice, at most (default `default_width`; the
    caller's policy decides it, sweeps/core/lane_policy.py), cut into equal slices; `exact`:
    slices of exactly `width` lanes, the last one padded (a later refinement round reuses the
    programs its structure was compiled for); `threads`: slices trained at once (default: the
    cores). `rungs`: eval steps where lanes are pruned (sweeps/core/prune.py) within their
    `groups` (a number per lane); the live lanes are then repacked into fewer slices of the
    same width (the same compiled program).
    """
    timing = timing or Timing()
    prog = get_program(structure, data)
    threads = slice_threads(threads)
    n = _num_lanes(hyperparams)
    rungs = list(rungs or [])
    if start is None or not start:  # (no slice left: every lane was pruned before the resume)
        cap = width or default_width(structure)
    else:  # a checkpoint keeps the width it was cut at, whatever this host would choose now
        cap = int(np.shape(jax.tree.leaves(start[0])[0])[0])
        exact = exact or width is not None or pruned is not None
    live = pruned.live if pruned is not None else np.arange(n)
    hp_live = hyperparams if pruned is None else take_host(hyperparams, live)
    _, width, bounds, hp_slices = (
        _lane_slices(hp_live, cap, exact) if len(live) else (0, cap, [], [])
    )
    if start and (width != cap or len(start) != len(bounds)):
        raise ValueError(
            f"the checkpoint holds {len(start)} slices of {cap} lanes, which do not cut {n} lanes"
        )
    x, y, xv, yv = _device_data(data)
    busy = min(threads, len(bounds))  # slices side by side (no more than there are)
    layout = Layout(n, width, bounds, live, busy)

    def compiled(name, *args):
        before = prog.compiles
        run = prog.compiled(name, *args)
        timing.compile_s += prog.last_compile_s
        timing.compiles += prog.compiles - before
        return run

    last = None
    plan = BatchPlan(data.n_train, structure.batch_size, structure.steps, data_seed)
    if start is None:
        keys, idx = _init_inputs(seeds, bounds, width)
        inputs = _chunk_inputs(plan, 0, structure)[1]
        compile_first(prog, (keys, idx[0], hp_slices[0]), (x, y, xv, yv), inputs, timing)
        states = [
            compiled("init", keys, i, hp)(keys, i, hp) for i, hp in zip(idx, hp_slices, strict=True)
        ]
        evaluate = compiled("eval", states[0], xv, yv)
        evals = [evaluate(st, xv, yv) for st in states]
        last = _eval_point(0, layout, evals, None, None, states, structure, None)
        if rungs:
            last.prune = PruneState(np.full(n, LIVE, np.int64), last.val_loss.copy())
        yield last
    else:  # a checkpoint may hold host (numpy) arrays
        states = [jax.device_put(s) for s in start]
    prune = last.prune if last is not None else pruned

    for step0 in range(start_step, structure.steps, structure.eval_every):
        real, inputs = _chunk_inputs(plan, step0, structure)
        if not states:  # every lane pruned: nothing to train
            last = _idle_point(step0 + real, n, width, last)
            last.prune = prune
            yield last
            continue
        run = compiled("chunk", states[0], hp_slices[0], x, y, xv, yv, *inputs)
        t0 = time.perf_counter()
        calls = [(st, hp, x, y, xv, yv, *inputs) for st, hp in zip(states, hp_slices, strict=True)]
        results = _each_slice(threads, run, calls)
        states = [r[0] for r in results]
        outs = [r[1:] for r in results]
        losses = [o[0][:, :real] for o in outs]
        lrs = [o[1][:, real - 1] for o in outs]
        evals = [(o[2], o[3]) for o in outs]
        step = step0 + real
        point = _eval_point(step, layout, evals, losses, lrs, states, structure, last)
        if prune is not None:
            prune = PruneState(prune.pruned_at.copy(), prune.start_val)
            point.prune = prune
            if step in rungs and groups is not None:
                states, hp_slices, layout = apply_rung(
                    point, prune, hyperparams, groups, states, hp_slices, layout, threads
                )
                point.state = states  # a checkpoint holds the repacked live lanes
        timing.train_s += time.perf_counter() - t0
        last = point
        yield point


def _idle_point(step: int, n: int, width: int, last: EvalPoint | None) -> EvalPoint:
    """An eval point of a population whose every lane has stopped: NaN rows, flags kept."""
    nan = np.full(n, np.nan, np.float32)
    metrics = (
        {} if last is None else {k: np.full_like(v, np.nan) for k, v in last.val_metrics.items()}
    )
    keep = (
        (lambda name, empty: empty) if last is None else (lambda name, empty: getattr(last, name))
    )
    return EvalPoint(
        step, nan, np.full((n, 0), np.nan, np.float32), nan, metrics, nan,
        keep("diverged_at", np.full(n, -1, np.int32)), keep("spiked", np.zeros(n, bool)),
        keep("init_loss", nan), [], width, 0,
    )  # fmt: skip


def _eval_point(step, layout, evals, losses, lrs, states, structure, last) -> EvalPoint:
    """Gather the slices' device outputs into host arrays over all the lanes: a lane no
    longer training (pruned) reads NaN, its divergence and spike flags as they were."""
    n, live = layout.n, layout.live

    def cat(parts, before=None):
        got = np.concatenate(
            [np.asarray(p)[: hi - lo] for p, (lo, hi) in zip(parts, layout.bounds, strict=True)]
        )[: len(live)]
        if len(live) == n:
            return got
        # unknown (a resumed run's pruned lanes): NaN, -1 (not diverged), False
        fill = np.nan if got.dtype.kind == "f" else -1 if got.dtype.kind == "i" else 0
        out = (
            np.array(before)
            if before is not None
            else np.full((n, *got.shape[1:]), fill, got.dtype)
        )
        out[live] = got
        return out

    val_loss = cat([e[0] for e in evals])
    metrics = {k: cat([e[1][k] for e in evals]) for k in evals[0][1]}
    if losses is None:  # the step-0 evaluation: nothing trained yet
        step_losses = np.zeros((n, 0), np.float32)
        train_loss = np.full(n, np.nan, np.float32)
        lr = np.full(n, np.nan, np.float32)
    else:
        step_losses = cat(losses)
        with np.errstate(all="ignore"):
            train_loss = _nanmean_rows(step_losses)
        lr = cat(lrs)
    keep = (lambda name: getattr(last, name)) if last is not None else (lambda name: None)
    init = None if losses is None else cat([s.init_loss for s in states], before=keep("init_loss"))
    return EvalPoint(
        step=step,
        train_loss=train_loss,
        step_losses=step_losses,
        val_loss=val_loss,
        val_metrics=metrics,
        learning_rate=lr,
        diverged_at=cat([s.diverged_at for s in states], before=keep("diverged_at")),
        spiked=cat([s.spiked for s in states], before=keep("spiked")),
        init_loss=init,
        state=states,
        width=layout.width,
        threads=layout.threads,
    )


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    counts = np.sum(np.isfinite(a), axis=1)
    sums = np.nansum(np.where(np.isfinite(a), a, np.nan), axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).astype(np.float32)
