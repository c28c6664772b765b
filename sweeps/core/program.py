"""One structure's program: the pure per-lane step and evaluation, the population programs
built from them (`jit(scan(vmap(step)))` over a chunk, then an evaluation of every lane), and
the process-wide cache that compiles each once per shape.

A structure is everything that shapes the compiled program (model, loss, optimizer, schedule,
batch size, steps); the numbers that vary per lane (learning rate, optimizer and schedule
arguments) are `LaneHyperparams`, traced arrays over the lane axis, so a second population
with other numbers reuses the compile. Lanes are independent: nothing reduces across the lane
axis, so a NaN in one lane never touches another. A lane whose loss is non-finite, or stays
above `diverge_factor` x its initial loss for `patience` steps, is frozen (its updates are
masked) and records the step at which it diverged; a shorter spike that comes back leaves a
mark (`spiked`) but trains on.

The trainer that drives these programs over slices and chunks is sweeps/core/population.py.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from models import ModelSpec, make_model, mup
from models.specs import DataShape, ImportModelSpec
from sweeps.core.data import Dataset
from sweeps.core.losses import get_loss
from sweeps.core.optimizers import get_optimizer, set_hyperparams
from sweeps.core.schedules import HORIZON, get_schedule


@dataclass(frozen=True)
class Structure:
    """Everything that shapes the compiled program. Numbers that vary per lane are not here."""

    model: ModelSpec
    loss: str  # a built-in name or an import reference
    optimizer: str
    schedule: str
    batch_size: int
    steps: int
    eval_every: int
    diverge_factor: float = 4.0
    patience: int = 20
    metrics: str | None = None  # the user's metrics function, by import reference

    def refs(self) -> list[str]:
        """The import references this structure's program is built from."""
        model = [self.model.import_] if isinstance(self.model, ImportModelSpec) else []
        loss = [self.loss] if ":" in self.loss else []
        return model + loss + ([self.metrics] if self.metrics else [])

    def __hash__(self) -> int:  # pydantic models are not hashable; their JSON is
        return hash((self.model.model_dump_json(), *list(self.__dict__.values())[1:]))


class LaneHyperparams(NamedTuple):
    learning_rate: jnp.ndarray  # (L,)
    optimizer_args: dict[str, jnp.ndarray]  # each (L,)
    schedule_args: dict[str, jnp.ndarray]


class LaneState(NamedTuple):
    params: Any
    model_state: Any  # BatchNorm statistics and RNG streams (models/registry.py); {} if none
    opt_state: Any
    init_loss: jnp.ndarray  # first minibatch loss: the reference for divergence
    above: jnp.ndarray  # consecutive steps above diverge_factor x init_loss
    spiked: jnp.ndarray  # ever above the threshold (a recovered spike makes a lane unstable)
    frozen: jnp.ndarray
    diverged_at: jnp.ndarray  # step, or -1


def make_hyperparams(
    learning_rates, optimizer_args: Mapping[str, Any], schedule_args: Mapping[str, Any]
) -> LaneHyperparams:
    f32 = lambda v: jnp.asarray(np.asarray(v, dtype=np.float32))  # noqa: E731
    return LaneHyperparams(
        f32(learning_rates),
        {k: f32(v) for k, v in optimizer_args.items()},
        {k: f32(v) for k, v in schedule_args.items()},
    )


def data_shape(data: Dataset, loss) -> DataShape:
    """What a model's constructor may ask about this data (models/registry.py)."""
    return DataShape(
        n_outputs=loss.num_outputs(data.num_classes, data.n_targets),
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        image_shape=data.image_shape,
        vocab_size=data.vocab_size,
    )


def loss_of(structure: Structure, data: Dataset):
    return get_loss(structure.loss, task=data.task, metrics=structure.metrics)


# The init program runs once per population and is mostly random-number generation, which
# XLA's CPU backend is slow to optimise at its default level; level 1 compiles it several
# times faster and gives the same parameters bit for bit (tests/sweeps/core/test_program.py,
# every built-in model). The chunk and eval programs run at every step: XLA's defaults.
FAST_INIT_OPTIONS = {"xla_backend_optimization_level": 1}


def _key(name: str, args: tuple) -> tuple:
    """A compiled program's cache key: its name and its arguments' structure and shapes."""
    shapes = jax.tree.map(lambda a: (jnp.shape(a), jnp.result_type(a)), args)
    return (name, str(jax.tree.structure(args)), str(jax.tree.leaves(shapes)))


def _compile_options(name: str) -> dict[str, Any] | None:
    """XLA options for compiling program `name` (None: XLA's defaults)."""
    if name == "init" and jax.default_backend() == "cpu":
        return FAST_INIT_OPTIONS
    return None


class Program:
    """The pure functions of one structure, built once and compiled per shape."""

    def __init__(self, structure: Structure, data: Dataset):
        self.structure = structure
        loss = loss_of(structure, data)
        self.loss = loss
        self.model = make_model(structure.model, data_shape(data, loss))
        # μP's per-parameter LR factors (None in SP): the updates are scaled, the LR itself
        # stays the lane's one traced number (models/mup.py)
        self.lr_multipliers = mup.lr_multipliers(
            structure.model, data_shape(data, loss), make_model
        )
        self.optimizer = get_optimizer(structure.optimizer)
        self.tx = self.optimizer.build()
        self.schedule = get_schedule(structure.schedule)
        self._compiled: dict[tuple, Any] = {}
        self.compiles = 0

    # -- per-lane pure functions -------------------------------------------------------
    def horizon(self, sched_args):
        """The lane's own training length: `HORIZON` among its schedule arguments (a traced
        per-lane value, so one compile serves every horizon: transfer.steps), else the
        structure's steps."""
        return sched_args.get(HORIZON, float(self.structure.steps))

    def lr_at(self, step, hp_lr, sched_args):
        total = self.horizon(sched_args)
        return self.schedule.fn(step.astype(jnp.float32), total, hp_lr, sched_args)

    def lane_step(self, lane: LaneState, hp_lr, sched_args, x, y, step):
        s = self.structure
        lr = self.lr_at(step, hp_lr, sched_args)

        def objective(params):
            pred, model_state = self.model.apply(params, lane.model_state, x, True)
            return self.loss.fn(pred, y), model_state

        (loss, model_state), grads = jax.value_and_grad(objective, has_aux=True)(lane.params)
        finite = jnp.isfinite(loss)
        init_loss = jnp.where(step == 0, loss, lane.init_loss)
        above_now = loss > s.diverge_factor * init_loss
        above = jnp.where(above_now, lane.above + 1, 0)
        # past its own horizon a lane stops as if its run had ended (not frozen: not diverged)
        running = step < self.horizon(sched_args)
        live = ~lane.frozen & running
        newly_dead = live & (~finite | (above >= s.patience))
        diverged_at = jnp.where(
            newly_dead, jnp.where(finite, step - s.patience + 1, step), lane.diverged_at
        )
        frozen = lane.frozen | newly_dead
        opt_state = set_hyperparams(lane.opt_state, {"learning_rate": lr})
        updates, new_opt = self.tx.update(grads, opt_state, lane.params)
        updates = mup.scale_updates(updates, self.lr_multipliers)
        # Frozen lanes keep their parameters: the mask is fused into the update itself (no
        # extra pass over memory). Their optimizer state may go on changing, or turn NaN:
        # nothing reads it again, and nothing crosses lanes.
        move = ~frozen & running
        params = jax.tree.map(lambda p, u: p + jnp.where(move, u, 0.0), lane.params, updates)
        model_state = jax.tree.map(
            lambda new, old: jnp.where(move, new, old), model_state, lane.model_state
        )
        new_lane = LaneState(
            params, model_state, new_opt, init_loss, jnp.where(live, above, lane.above),
            lane.spiked | (live & above_now), frozen, diverged_at,
        )  # fmt: skip
        return new_lane, (jnp.where(live, loss, jnp.nan), lr)

    def lane_eval(self, lane: LaneState, x_val, y_val):
        params = lane.params
        if self.optimizer.eval_params is not None:
            params = self.optimizer.eval_params(lane.opt_state, params)
        pred, _ = self.model.apply(params, lane.model_state, x_val, False)
        return self.loss.fn(pred, y_val), self.loss.metrics(pred, y_val)

    # -- the population programs -------------------------------------------------------
    def _init_pop(self, seeds_keys, seed_index, hp: LaneHyperparams):
        keyed = jax.vmap(self.model.init)(seeds_keys)  # one init per distinct seed
        params, model_state = jax.tree.map(lambda a: a[seed_index], keyed)

        def one(p, ms, lr, opt_args):
            # Built with the lane's own numbers so `init` sees them (adagrad's accumulator).
            opt_state = self.optimizer.build({"learning_rate": lr, **opt_args}).init(p)
            zero_i, no = jnp.zeros((), jnp.int32), jnp.zeros((), bool)
            f0 = jnp.zeros((), jnp.float32)
            return LaneState(p, ms, opt_state, f0, zero_i, no, no, zero_i - 1)

        return jax.vmap(one)(params, model_state, hp.learning_rate, hp.optimizer_args)

    def _chunk(self, state: LaneState, hp: LaneHyperparams, x, y, xv, yv, idx, steps, valid):
        n = hp.learning_rate.shape[0]

        def train(st, rows, step):
            xb, yb = x[rows], y[rows]  # one gather, shared by all lanes
            return jax.vmap(self.lane_step, in_axes=(0, 0, 0, None, None, None))(
                st, hp.learning_rate, hp.schedule_args, xb, yb, step
            )

        def pad(st, rows, step):  # the padded tail of the last chunk: nothing moves
            return st, (jnp.full((n,), jnp.nan), jnp.full((n,), jnp.nan))

        def body(st, inp):
            rows, step, ok = inp
            # `ok` is the same for every lane, so this stays a real branch under vmap.
            return jax.lax.cond(ok, train, pad, st, rows, step)

        state, (losses, lrs) = jax.lax.scan(body, state, (idx, steps, valid))
        val_loss, metrics = jax.vmap(self.lane_eval, in_axes=(0, None, None))(state, xv, yv)
        return state, losses.T, lrs.T, val_loss, metrics

    def _eval_pop(self, state, xv, yv):
        return jax.vmap(self.lane_eval, in_axes=(0, None, None))(state, xv, yv)

    def compiled(self, name: str, *args):
        """AOT-compile `name` for these argument shapes once; count and time compiles."""
        key = _key(name, args)
        if key not in self._compiled:
            t0 = time.perf_counter()
            self._compiled[key] = self._compile(name, args)
            self.compiles += 1
            self.last_compile_s = time.perf_counter() - t0
        else:
            self.last_compile_s = 0.0
        return self._compiled[key]

    def compile_together(self, calls: list[tuple[str, tuple]]) -> tuple[int, float]:
        """AOT-compile the programs of `calls` (name, arguments: arrays or their
        `jax.ShapeDtypeStruct`s) not compiled yet, each in its own thread: XLA compiles one
        program on about one core and releases the GIL meanwhile, so a population's init,
        eval and chunk programs take the time of the slowest instead of their sum. Returns
        how many were compiled and the seconds it took."""
        todo: dict[tuple, tuple[str, tuple]] = {}
        for name, args in calls:
            key = _key(name, args)
            if key not in self._compiled:
                todo.setdefault(key, (name, args))
        if not todo:
            return 0, 0.0
        t0 = time.perf_counter()
        with ThreadPoolExecutor(len(todo), thread_name_prefix="compile") as pool:
            built = list(pool.map(lambda call: self._compile(*call), todo.values()))
        for key, program in zip(todo, built, strict=True):
            self._compiled.setdefault(key, program)
        self.compiles += len(todo)
        return len(todo), time.perf_counter() - t0

    def has(self, name: str, *args) -> bool:
        """Whether `name` is compiled for these argument shapes already."""
        return _key(name, args) in self._compiled

    def state_shape(self, seeds_keys, seed_index, hp: LaneHyperparams) -> Any:
        """The shapes of the state the init program makes (`jax.eval_shape`: nothing runs)."""
        return jax.eval_shape(self._init_pop, seeds_keys, seed_index, hp)

    def _compile(self, name: str, args: tuple):
        fn = {"init": self._init_pop, "chunk": self._chunk, "eval": self._eval_pop}[name]
        donate = (0,) if name == "chunk" else ()
        lowered = jax.jit(fn, donate_argnums=donate).lower(*args)
        return lowered.compile(compiler_options=_compile_options(name))

    def executables(self) -> dict[tuple, Any]:
        """The compiled programs by key (see `compiled`), e.g. to ship to another process."""
        return dict(self._compiled)

    def add_executable(self, key: tuple, compiled: Any) -> None:
        """Use a program compiled elsewhere for `key`, as if `compiled` had built it."""
        self._compiled.setdefault(key, compiled)


_PROGRAMS: dict[tuple, Program] = {}


def _program_key(structure: Structure, data: Dataset) -> tuple:
    """A structure on data of these shapes and dtypes, with the user objects it is built from
    as they are now (an edited file or a redefined class is a new program)."""
    from models import imports

    return (structure, data.x_train.shape, data.x_val.shape, str(data.x_train.dtype),
            data.y_train.shape[1:], data.num_classes, data.image_shape,
            imports.identity(structure.refs()))  # fmt: skip


def get_program(structure: Structure, data: Dataset) -> Program:
    """The cached program of a structure (and data shapes): compiled once per process."""
    key = _program_key(structure, data)
    if key not in _PROGRAMS:
        _PROGRAMS[key] = Program(structure, data)
    return _PROGRAMS[key]


def cached_programs() -> int:
    """How many programs this process holds (a long-lived trainer bounds it)."""
    return len(_PROGRAMS)


def forget_programs() -> None:
    """Drop every compiled program of this process (a benchmark's variants each start cold)."""
    _PROGRAMS.clear()
