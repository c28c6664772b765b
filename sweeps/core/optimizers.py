"""The optimizer registry: optax transformations whose numbers live in their state.

Every optimizer is built once per compiled structure with `optax.inject_hyperparams`, so its
learning rate and numeric arguments (momentum, betas, weight decay, ...) are arrays in
`opt_state.hyperparams`. Each lane writes its own values there, and the trainer overwrites
`learning_rate` each step with the scheduled value: one compile serves every lane.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sweeps.core.lazy import LazyModule

if TYPE_CHECKING:
    import jax.numpy as jnp
    import optax
else:  # the names and defaults are read without JAX (spec validation); building imports it
    jnp, optax = LazyModule("jax.numpy"), LazyModule("optax")


@dataclass(frozen=True)
class Optimizer:
    name: str
    transform: str  # the optax function by name ("adam", "contrib.prodigy"): see `factory`
    defaults: dict[str, float] = field(default_factory=dict)  # numeric, per-lane, traced
    static: dict[str, Any] = field(default_factory=dict)  # structural, fixed per compile
    lr_free: bool = False  # learns its own step size: the LR grid is not searched
    default_lr: float = 1.0  # the LR an lr_free optimizer runs at
    # Parameter-sized arrays in its state (the memory budget counts them per lane; a test
    # checks each against optax's actual state)
    state_arrays: int = 0
    # Some optimizers evaluate at other parameters than they train (schedule-free averages).
    eval_params: Callable[[Any, Any], Any] | None = None
    doc: str = ""

    @property
    def factory(self) -> Callable[..., optax.GradientTransformation]:
        """The optax function (resolved here, so that reading the registry imports no JAX)."""
        return functools.reduce(getattr, self.transform.split("."), optax)

    def build(self, values: Mapping[str, Any] | None = None) -> optax.GradientTransformation:
        """The injectable transformation. `values` may be traced per-lane arrays: `init` then
        sees the lane's own numbers (adagrad's initial accumulator, say), and `update` always
        reads them from `opt_state.hyperparams`, so one built instance updates every lane."""
        numbers = {"learning_rate": self.default_lr, **self.defaults, **(values or {})}
        return optax.inject_hyperparams(self.factory, static_args=tuple(self.static))(
            **numbers, **self.static
        )


def _schedule_free_eval(opt_state, params):
    return optax.contrib.schedule_free_eval_params(opt_state.inner_state, params)


OPTIMIZERS: dict[str, Optimizer] = {
    o.name: o
    for o in [
        Optimizer("sgd", "sgd", doc="plain stochastic gradient descent"),
        Optimizer(
            "momentum",
            "sgd",
            {"momentum": 0.9},
            state_arrays=1,
            doc="SGD with heavy-ball momentum (optax.sgd(lr, momentum))",
        ),
        Optimizer(
            "nesterov",
            "sgd",
            {"momentum": 0.9},
            {"nesterov": True},
            state_arrays=1,
            doc="Nesterov momentum",
        ),
        Optimizer("adam", "adam", {"b1": 0.9, "b2": 0.999, "eps": 1e-8}, state_arrays=2),
        Optimizer(
            "adamw",
            "adamw",
            {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 1e-4},
            state_arrays=2,
        ),
        Optimizer("rmsprop", "rmsprop", {"decay": 0.9, "eps": 1e-8}, state_arrays=1),
        Optimizer(
            "adagrad", "adagrad", {"initial_accumulator_value": 0.1, "eps": 1e-7}, state_arrays=1
        ),
        Optimizer("lion", "lion", {"b1": 0.9, "b2": 0.99, "weight_decay": 1e-3}, state_arrays=1),
        Optimizer(
            "schedule_free_adamw",
            "contrib.schedule_free_adamw",
            {"b1": 0.9, "b2": 0.999, "weight_decay": 0.0},
            eval_params=_schedule_free_eval,
            state_arrays=2,
            doc="schedule-free AdamW (Defazio et al.): no schedule needed, evaluated at its average",
        ),
        Optimizer(
            "prodigy",
            "contrib.prodigy",
            {"weight_decay": 0.0},
            lr_free=True,
            state_arrays=4,
            doc="Prodigy (Mishchenko & Defazio): estimates its own step size",
        ),
        Optimizer(
            "dadapt_adamw",
            "contrib.dadapt_adamw",
            {"weight_decay": 0.0},
            lr_free=True,
            state_arrays=3,
            doc="D-Adaptation AdamW: estimates its own step size",
        ),
    ]
}

OPTIMIZER_NAMES = tuple(OPTIMIZERS)


def get_optimizer(name: str) -> Optimizer:
    return OPTIMIZERS[name]


def set_hyperparams(opt_state, values: Mapping[str, jnp.ndarray]):
    """Return `opt_state` with the given injected hyperparameters replaced (pure)."""
    hyperparams = dict(opt_state.hyperparams)
    for key, value in values.items():
        hyperparams[key] = jnp.asarray(value, dtype=hyperparams[key].dtype)
    return opt_state._replace(hyperparams=hyperparams)
