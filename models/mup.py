"""μP (maximal update parametrization) for the built-in mlp and transformer, Adam's rule.

Tensor Programs V (Yang et al. 2022), the width-multiplier formulation of its table 8 (the
`mup` package's), for entrywise-normalised optimizers (Adam and kin; Everett et al. 2024):

| parameter                              | init variance        | multiplier  | Adam LR     |
|----------------------------------------|----------------------|-------------|-------------|
| input weights, embeddings, all biases, | as in SP (1/fan_in)  | 1           | η           |
| norms' scales (one or no width dim)    |                      |             |             |
| hidden weights (two width dims)        | as in SP (1/fan_in)  | 1           | η · b/n     |
| readout weights (fan-in is the width)  | 1/base_fan_in        | b/n on its  | η           |
|                                        | (SP's · n/b)         | input       |             |

with n a tensor's fan-in and b the same tensor's fan-in at `base_width`; attention logits are
scaled 1/d_head (as sqrt(b_head)/d_head, so 1/sqrt(d_head) at the base) instead of
1/sqrt(d_head). At `width == base_width` every factor is exactly 1: μP is SP there, the
point of the width multiplier formulation (tests/models/test_mup.py checks it bit for bit).

Which dims are "width" is read from the shapes, as the `mup` package's base shapes do: the
model is built (abstractly) at its width and at `base_width`, and a dimension that differs is
a width dimension. The modules apply the forward-pass parts (readout multiplier and init,
attention scale: models/nets.py, models/transformer.py); the LR part is `lr_multipliers`, a
tree of per-parameter factors the trainer multiplies the optimizer's updates by
(sweeps/core/program.py). For Adam-like optimizers the update is linear in the LR, so
scaling the update is scaling the LR, and the LR stays one traced per-lane number.

This module imports no JAX at load (the spec's validation reads its names).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

# Optimizers whose update is an entrywise-normalised step, linear in the LR: Adam's μP rule
# holds (TP V, TP IVb). SGD and momentum need another rule (their LR scales with fan_out and
# fan_in differently, TP V table 3); LR-free ones (prodigy, D-adaptation) estimate their own
# step size, and schedule-free AdamW's update is not linear in the LR (it interpolates
# averages), so a multiplier on its update is not a multiplier on its LR.
MUP_OPTIMIZERS = ("adam", "adamw", "rmsprop", "adagrad", "lion")
MUP_MODELS = ("mlp", "transformer")
PARAMETRIZATIONS = ("sp", "mup")


def scaled_hidden(hidden: Sequence[int], width: int) -> list[int]:
    """The mlp's hidden sizes at `width`: every size scaled by width / max(hidden) (equal
    sizes, the default, all become `width`)."""
    factor = width / max(hidden)
    return [max(1, round(h * factor)) for h in hidden]


def model_width(spec: Any) -> int:
    """The width μP compares with `base_width`: the mlp's widest hidden layer, the
    transformer's d_model."""
    if spec.name == "mlp":
        return spec.width if spec.width is not None else max(spec.hidden)
    return spec.d_model


def at_width(spec: Any, width: int) -> Any:
    """The same model spec at another width (the mlp's `width`, the transformer's d_model)."""
    field = "width" if spec.name == "mlp" else "d_model"
    return spec.model_copy(update={field: width})


def readout_multiplier(fan_in: int, base_fan_in: int) -> float:
    """The factor on the readout layer's input: b/n (1.0 at the base width)."""
    return base_fan_in / fan_in


def readout_init_scale(fan_in: int, base_fan_in: int) -> float:
    """The factor on SP's readout init (variance 1/n) that makes it 1/b: sqrt(n/b)."""
    return math.sqrt(fan_in / base_fan_in)


def attention_scale(head_dim: int, base_head_dim: int) -> float:
    """μP's 1/d_head attention, equal to SP's 1/sqrt(d_head) at the base head size:
    sqrt(b)/d = (1/sqrt(b)) · (b/d)."""
    return (1.0 / math.sqrt(base_head_dim)) * (base_head_dim / head_dim)


def _factor(shape: tuple[int, ...], base: tuple[int, ...], where: str) -> float:
    """One tensor's Adam LR factor from its shape at the width and at the base width."""
    if len(shape) != len(base):
        raise ValueError(f"model.parametrization: {where} changes rank with the width")
    if len(shape) < 2:
        return 1.0  # biases, norms' scales: vector-like
    fan_in, fan_out = shape[-2], shape[-1]
    base_in, base_out = base[-2], base[-1]
    if fan_in != base_in and fan_out != base_out:
        return base_in / fan_in  # hidden: both dims are width
    return 1.0  # input (fan_out is width) or readout (fan_in is width: its multiplier)


def lr_multipliers(spec: Any, data_shape: Any, make_model: Callable) -> Any | None:
    """The per-parameter Adam LR factors of a μP model (a tree shaped like its params), or
    None in standard parametrization (nothing to scale). `make_model` is the registry's
    (models/registry.py; passed in: the registry imports the modules that import this one)."""
    if getattr(spec, "parametrization", "sp") != "mup":
        return None
    import jax

    def shapes(s):
        params, _ = jax.eval_shape(make_model(s, data_shape).init, jax.random.key(0))
        return params

    here = shapes(spec)
    base = shapes(at_width(spec, spec.base_width))
    paths, treedef = jax.tree_util.tree_flatten_with_path(here)
    base_leaves = jax.tree.leaves(base)
    if len(base_leaves) != len(paths):
        raise ValueError("model.parametrization: the model's parameters change with the width")
    factors = [
        _factor(tuple(leaf.shape), tuple(b.shape), jax.tree_util.keystr(path))
        for (path, leaf), b in zip(paths, base_leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, factors)


def scale_updates(updates: Any, multipliers: Any | None) -> Any:
    """The optimizer's updates times the per-parameter factors (Adam-like: the LR's)."""
    if multipliers is None:
        return updates
    import jax

    return jax.tree.map(lambda u, m: u if m == 1.0 else u * m, updates, multipliers)
