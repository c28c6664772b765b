"""The checks that need the loaded data: loss vs task, batch size vs rows, the model on a
sample batch (traced abstractly) against the loss and the metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

# Light imports only (no JAX): the registries' names and defaults load without it, so a spec
# is validated, and a typo answered, in a fraction of a second (tests/sweeps/test_spec_light.py).
from sweeps.core.losses import LOSSES
from sweeps.errors import SpecError

if TYPE_CHECKING:
    from sweeps.core.data import Dataset


from sweeps.spec.schema import SweepSpec


def model_for(spec: SweepSpec, data: Dataset):
    """(the loss, the model's pure functions) for this spec on this data. ValueError names
    the field at fault (an import that fails, a constructor that refuses its arguments)."""
    from models import make_model  # JAX: the data is loaded, a sweep is about to run
    from sweeps.core.losses import get_loss
    from sweeps.core.program import data_shape

    loss = get_loss(
        spec.loss_key,
        task=data.task,
        metrics=spec.metrics.import_ if spec.metrics else None,
        metric=spec.metric_name,
        higher_is_better=spec.higher_is_better,
    )
    return loss, make_model(spec.model, data_shape(data, loss))


def check_against_data(spec: SweepSpec, data: Dataset) -> None:
    """The checks that need the loaded data: loss vs task, batch size vs rows, and the model on
    a sample batch (built, called, its output fed to the loss and the metrics: abstractly,
    shapes only, so a big model costs no FLOPs)."""
    errors = []
    builtin = LOSSES.get(spec.loss_key)
    if builtin is not None and builtin.task != data.task:
        errors.append(
            f"loss: '{spec.loss_name}' is a {builtin.task} loss but data '{data.name}' is a "
            f"{data.task} task"
        )
    elif builtin is not None and builtin.binary_only and data.num_classes != 2:
        errors.append(f"loss: 'bce' needs two classes; data '{data.name}' has {data.num_classes}")
    if spec.train.batch_size != "full" and spec.train.batch_size > data.n_train:
        errors.append(
            f"train.batch_size: {spec.train.batch_size} is larger than the {data.n_train} "
            "training rows (use a smaller batch or 'full')"
        )
    if not errors:  # the model on a sample batch: only meaningful when loss and task agree
        try:
            loss, fns = model_for(spec, data)
            errors += _sample_batch_errors(spec, data, loss, fns)
        except (ValueError, TypeError) as err:  # e.g. a cnn on tabular data, a bad import
            message = str(err)
            errors.append(message if ":" in message.split(" ")[0] else f"model: {message}")
    if errors:
        raise SpecError(errors)


def _sample_batch_errors(spec: SweepSpec, data: Dataset, loss, fns) -> list[str]:
    """Trace the model, the loss and the metrics on two training examples (shapes only)."""
    import jax

    x, y = data.x_train[:2], data.y_train[:2]
    label = fns.name
    try:
        variables = jax.eval_shape(fns.init, jax.random.key(0))
        pred, _ = jax.eval_shape(lambda v, x: fns.apply(*v, x, True), variables, x)
    except Exception as err:  # the user's code: anything may come out of it
        return [f"model: {label} fails on a batch of shape {tuple(x.shape)} {x.dtype}: "
                f"{type(err).__name__}: {_short(err)}"]  # fmt: skip
    try:  # evaluation runs another graph (model.eval(), no dropout keys, eval flags)
        jax.eval_shape(lambda v, x: fns.apply(*v, x, False), variables, x)
    except Exception as err:
        return [f"model: {label} fails in evaluation (model.eval()) on a batch of shape "
                f"{tuple(x.shape)}: {type(err).__name__}: {_short(err)}"]  # fmt: skip
    where = "loss" if isinstance(spec.loss, str) else "loss.import"
    if isinstance(spec.loss, str) and not isinstance(pred, jax.ShapeDtypeStruct):
        return [f"model: {label} returns a {_kind(pred)}, but the built-in loss "
                f"'{spec.loss_name}' takes one array of predictions: return the predictions "
                "alone, or name your own loss (loss: {import: 'losses.py:my_loss'}) that "
                "takes what the model returns"]  # fmt: skip
    if isinstance(spec.loss, str):
        want = loss.expected_shape(tuple(y.shape), data.num_classes)
        if tuple(pred.shape) != want:
            return [f"model: {label} returns predictions of shape {tuple(pred.shape)} for a "
                    f"batch of 2, but '{spec.loss_name}' on these targets {tuple(y.shape)} "
                    f"takes {want}"]  # fmt: skip
    try:
        value = jax.eval_shape(loss.fn, pred, y)
    except Exception as err:
        return [f"{where}: fails on predictions {tuple(pred.shape)} and targets "
                f"{tuple(y.shape)}: {type(err).__name__}: {_short(err)}"]  # fmt: skip
    if getattr(value, "shape", None) != ():
        return [f"{where}: must return a scalar (the batch's mean loss), got shape "
                f"{getattr(value, 'shape', type(value).__name__)}"]  # fmt: skip
    try:
        metrics = jax.eval_shape(loss.metrics, pred, y)
    except Exception as err:
        return [f"metrics.import: fails: {type(err).__name__}: {_short(err)}"]
    if not isinstance(metrics, dict) or spec.metric_name not in metrics:
        names = ", ".join(metrics) if isinstance(metrics, dict) else type(metrics).__name__
        return [f"metrics.metric: '{spec.metric_name}' is not among the metrics returned "
                f"({names})"]  # fmt: skip
    bad = [k for k, v in metrics.items() if getattr(v, "shape", None) != ()]
    if bad:
        return [f"metrics.import: every metric must be a scalar; not: {', '.join(bad)}"]
    return []


def _kind(value) -> str:
    """What a model returned, for a message: `tuple of 2 (array, array)`."""
    if isinstance(value, tuple | list):
        parts = ", ".join("array" if hasattr(v, "shape") else type(v).__name__ for v in value)
        return f"{type(value).__name__} of {len(value)} ({parts})"
    return type(value).__name__


def _short(err: Exception, limit: int = 300) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."
