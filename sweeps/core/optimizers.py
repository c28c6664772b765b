"""The optimizer registry: optax transformations whose numbers live in their state.

Every optimizer is built once per compiled structure with `optax.inject_hyperparams`, so its
learning rate and numeric arguments (momentum, betas, weight decay, ...) are arrays in
`opt_state.hyperparams`. Each lane writes its own values there, and the trainer overwrites
`learning_rate` each step with the scheduled value: one compile serves every lane.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax.numpy as jnp
import optax


@dataclass(frozen=True)
class Optimizer:
    name: str
    factory: Callable[..., optax.GradientTransformation]
    defaults: dict[str, float] = field(default_factory=dict)  # numeric, per-lane, traced
    static: dict[str, Any] = field(default_factory=dict)  # structural, fixed per compile
    lr_free: bool = False  # learns its own step size: the LR grid is not searched
    default_lr: float = 1.0  # the LR an lr_free optimizer runs at
    # Some optimizers evaluate at other parameters than they train (schedule-free averages).
    eval_params: Callable[[Any, Any], Any] | None = None
    doc: str = ""

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
        Optimizer("sgd", optax.sgd, doc="plain stochastic gradient descent"),
        Optimizer(
            "momentum",
            optax.sgd,
            {"momentum": 0.9},
            doc="SGD with heavy-ball momentum (optax.sgd(lr, momentum))",
        ),
        Optimizer(
            "nesterov", optax.sgd, {"momentum": 0.9}, {"nesterov": True}, doc="Nesterov momentum"
        ),
        Optimizer("adam", optax.adam, {"b1": 0.9, "b2": 0.999, "eps": 1e-8}),
        Optimizer(
            "adamw", optax.adamw, {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 1e-4}
        ),
        Optimizer("rmsprop", optax.rmsprop, {"decay": 0.9, "eps": 1e-8}),
        Optimizer("adagrad", optax.adagrad, {"initial_accumulator_value": 0.1, "eps": 1e-7}),
        Optimizer("lion", optax.lion, {"b1": 0.9, "b2": 0.99, "weight_decay": 1e-3}),
        Optimizer(
            "schedule_free_adamw",
            optax.contrib.schedule_free_adamw,
            {"b1": 0.9, "b2": 0.999, "weight_decay": 0.0},
            eval_params=_schedule_free_eval,
            doc="schedule-free AdamW (Defazio et al.): no schedule needed, evaluated at its average",
        ),
        Optimizer(
            "prodigy",
            optax.contrib.prodigy,
            {"weight_decay": 0.0},
            lr_free=True,
            doc="Prodigy (Mishchenko & Defazio): estimates its own step size",
        ),
        Optimizer(
            "dadapt_adamw",
            optax.contrib.dadapt_adamw,
            {"weight_decay": 0.0},
            lr_free=True,
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
