"""Losses and their metrics, as pure functions of (predictions, targets).

Conventions that tests rely on: `mse` is the mean over examples and outputs of
(prediction - target)^2, like `torch.nn.MSELoss`; `cross_entropy` takes integer labels and
softmax logits; `bce` takes one logit per example and 0/1 labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sweeps.core.lazy import LazyModule

if TYPE_CHECKING:
    import jax.numpy as jnp
    import optax

    Array = jnp.ndarray
else:  # the names and tasks are read without JAX (spec validation); the functions import it
    jnp, optax = LazyModule("jax.numpy"), LazyModule("optax")
    Array = Any


@dataclass(frozen=True)
class Loss:
    name: str
    task: Literal["classification", "regression"]
    fn: Callable[[Array, Array], Array]  # mean loss over the batch
    metrics: Callable[[Array, Array], dict[str, Array]]
    metric: str  # the headline metric reported as `val_metric`
    higher_is_better: bool
    binary_only: bool = False

    def num_outputs(self, num_classes: int | None, num_targets: int) -> int:
        if self.task == "regression":
            return num_targets
        return 1 if self.binary_only else int(num_classes)

    def expected_shape(self, y_shape: tuple[int, ...], num_classes: int | None):
        """The prediction shape this loss takes for targets of `y_shape` (None: any)."""
        if self.task == "regression":
            return tuple(y_shape)
        if self.binary_only:
            return (*y_shape, 1)
        return (*y_shape, int(num_classes or 0))


def _accuracy_multiclass(logits, labels):
    return {"accuracy": jnp.mean(jnp.argmax(logits, axis=-1) == labels)}


def _accuracy_binary(logits, labels):
    return {"accuracy": jnp.mean((logits[:, 0] > 0) == (labels > 0))}


def _regression_metrics(pred, target):
    sse = jnp.sum((pred - target) ** 2)
    sst = jnp.sum((target - jnp.mean(target, axis=0)) ** 2)
    return {
        "r2": 1.0 - sse / jnp.maximum(sst, 1e-12),
        "rmse": jnp.sqrt(jnp.mean((pred - target) ** 2)),
    }


def _mse(pred, target):
    return jnp.mean((pred - target) ** 2)


def _mae(pred, target):
    return jnp.mean(jnp.abs(pred - target))


def _huber(pred, target):
    return jnp.mean(optax.huber_loss(pred, target, delta=1.0))


def _cross_entropy(logits, labels):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def _bce(logits, labels):
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits[:, 0], labels.astype(logits.dtype)))


LOSSES: dict[str, Loss] = {
    loss.name: loss
    for loss in [
        Loss("mse", "regression", _mse, _regression_metrics, "r2", True),
        Loss("mae", "regression", _mae, _regression_metrics, "r2", True),
        Loss("huber", "regression", _huber, _regression_metrics, "r2", True),
        Loss(
            "cross_entropy",
            "classification",
            _cross_entropy,
            _accuracy_multiclass,
            "accuracy",
            True,
        ),
        Loss("bce", "classification", _bce, _accuracy_binary, "accuracy", True, binary_only=True),
    ]
}

LOSS_NAMES = tuple(LOSSES)


def get_loss(
    key: str,
    *,
    task: str | None = None,
    metrics: str | None = None,
    metric: str | None = None,
    higher_is_better: bool = True,
) -> Loss:
    """A built-in loss by name, or the user's `fn(pred, y) -> scalar` by import reference
    (`task` is then the data's). `metrics` (a reference to `fn(pred, y) -> {name: scalar}`)
    replaces the loss's metrics, `metric` naming the one the verdict reports. A user loss
    without metrics reports its own value as the metric ("loss", lower is better)."""
    from dataclasses import replace

    from models.specs import ref_name

    if key in LOSSES:
        loss = LOSSES[key]
    else:
        fn = _resolve(key, "loss.import")
        loss = Loss(
            name=ref_name(key),
            task=task or "regression",
            fn=fn,
            metrics=lambda pred, y: {"loss": fn(pred, y)},
            metric="loss",
            higher_is_better=False,
        )
    if metrics is not None:
        loss = replace(
            loss,
            metrics=_resolve(metrics, "metrics.import"),
            metric=metric or "loss",
            higher_is_better=higher_is_better,
        )
    return loss


def _resolve(ref: str, field: str) -> Callable:
    from models import imports

    try:
        fn = imports.resolve(ref)
    except imports.ImportFailed as err:
        raise ValueError(f"{field}: {err}") from None
    if not callable(fn):
        raise ValueError(f"{field}: {ref} is a {type(fn).__name__}, not a function")
    return fn
