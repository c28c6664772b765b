"""Model registry: turn a ``ModelSpec`` into pure ``init``/``apply`` functions.

The population trainer vmaps over lanes, each with its own params, so it needs
functions rather than stateful modules. We build the NNX module once
(abstractly, no FLOPs) to capture its static structure (``graphdef``); params
then travel as a plain nested dict of arrays that optax, ``jax.vmap`` and
``jax.tree`` handle directly, and ``apply`` re-attaches them with
``nnx.merge`` at trace time.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
from flax import nnx

from models.nets import CNN, MLP, Linear
from models.specs import CNNSpec, LinearSpec, MLPSpec, ModelSpec

PyTree = Any
# A builder checks the spec against the data shape and returns a module
# factory; the factory is then called (possibly under vmap) with fresh Rngs.
ModuleFactory = Callable[[nnx.Rngs], nnx.Module]
Builder = Callable[[Any, int, int, tuple[int, int, int] | None], ModuleFactory]


@dataclass(frozen=True)
class ModelFns:
    """Pure functions for one model architecture.

    ``init(key)`` returns params as a nested dict of arrays (layer lists are
    keyed by int index, e.g. ``params["layers"][0]["kernel"]``).
    ``apply(params, x)`` maps (B, n_features) float32 to (B, n_outputs).
    """

    init: Callable[[jax.Array], PyTree]
    apply: Callable[[PyTree, jax.Array], jax.Array]
    num_params: int
    # every parameter array's shape: what a memory estimate needs (kernels' output widths)
    param_shapes: tuple[tuple[int, ...], ...] = ()


def _linear(
    spec: LinearSpec, n_features: int, n_outputs: int, image_shape: tuple[int, int, int] | None
) -> ModuleFactory:
    return lambda rngs: Linear(n_features, n_outputs, rngs=rngs)


def _mlp(
    spec: MLPSpec, n_features: int, n_outputs: int, image_shape: tuple[int, int, int] | None
) -> ModuleFactory:
    return lambda rngs: MLP(n_features, n_outputs, spec.hidden, spec.activation, rngs=rngs)


def _cnn(
    spec: CNNSpec, n_features: int, n_outputs: int, image_shape: tuple[int, int, int] | None
) -> ModuleFactory:
    if image_shape is None:
        raise ValueError(
            "model.name: cnn needs image-shaped inputs (e.g. digits 8x8); this dataset has none"
        )
    height, width, channels = image_shape
    if height * width * channels != n_features:
        raise ValueError(
            f"model.name: cnn image_shape {tuple(image_shape)} has {height * width * channels} "
            f"values but the dataset has {n_features} features"
        )
    return lambda rngs: CNN(
        image_shape,
        n_outputs,
        spec.channels,
        spec.kernel_size,
        spec.hidden,
        spec.activation,
        rngs=rngs,
    )


# Adding a model = one spec class in specs.py, one module in nets.py, one entry here.
MODELS: dict[str, Builder] = {"linear": _linear, "mlp": _mlp, "cnn": _cnn}


def make_model(
    spec: ModelSpec,
    *,
    n_features: int,
    n_outputs: int,
    image_shape: tuple[int, int, int] | None = None,
) -> ModelFns:
    """Build pure ``init``/``apply`` functions for ``spec`` on data of the given shape."""
    if n_features < 1 or n_outputs < 1:
        raise ValueError(f"n_features and n_outputs must be >= 1, got {n_features}, {n_outputs}")
    factory = MODELS[spec.name](spec, n_features, n_outputs, image_shape)
    key = (spec.model_dump_json(), n_features, n_outputs, image_shape)
    if (built := _ABSTRACT.get(key)) is None:
        built = _ABSTRACT[key] = _abstract_build(spec, factory)
        while len(_ABSTRACT) > _ABSTRACT_MAX:  # oldest first
            _ABSTRACT.pop(next(iter(_ABSTRACT)), None)
    graphdef, shapes, num_params = built

    def init(key: jax.Array) -> PyTree:
        module = factory(nnx.Rngs(params=key))
        return nnx.to_pure_dict(nnx.state(module, nnx.Param))

    def apply(params: PyTree, x: jax.Array) -> jax.Array:
        # merge runs at trace time only; under jit it costs nothing per step.
        return nnx.merge(graphdef, params)(x)

    return ModelFns(init=init, apply=apply, num_params=num_params, param_shapes=shapes)


# The abstract builds made so far, by (spec, data shape): tracing a model's shapes costs tens of
# ms, and every spec check (each API submit among them) builds its model twice.
_ABSTRACT: dict[tuple, tuple[Any, tuple[tuple[int, ...], ...], int]] = {}
_ABSTRACT_MAX = 256


def _abstract_build(spec: ModelSpec, factory: ModuleFactory) -> tuple:
    """Shapes only, no FLOPs (cheap for big models): (graphdef, param shapes, param count)."""
    abstract = nnx.eval_shape(lambda: factory(nnx.Rngs(0)))
    graphdef, abstract_params, other = nnx.split(abstract, nnx.Param, ...)
    # optax will update every leaf, so non-trainable state (RNG counters,
    # batch stats) must never end up in the params pytree.
    if jax.tree.leaves(other):
        raise TypeError(f"model {spec.name!r} has non-Param state; ModelFns cannot represent it")
    leaves = jax.tree.leaves(abstract_params)
    shapes = tuple(tuple(leaf.shape) for leaf in leaves)
    return graphdef, shapes, sum(leaf.size for leaf in leaves)
