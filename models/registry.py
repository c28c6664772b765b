"""Model registry: turn a model spec into pure ``init``/``apply`` functions.

One contract for every model, built-in or the user's (docs/architecture.md):
``Model(**args, rngs=nnx.Rngs(...))`` builds an ``nnx.Module``; the data fills in any of
``n_outputs``, ``input_shape``, ``n_features``, ``num_classes``, ``image_shape`` and
``vocab_size`` that its signature asks for. ``__call__(x)`` maps a batch to predictions.
Flax's own conventions (call-time ``rngs`` and mode flags, sharding annotations, config
dataclasses) are accepted as Flax writes them: models/conventions.py.

The population trainer vmaps over lanes, each with its own variables, so it needs functions
rather than stateful modules. We build the module once, abstractly (no FLOPs), to capture its
static structure (two ``graphdef``s: one after ``model.train()``, one after ``model.eval()``);
variables then travel as plain nested dicts of arrays that optax, ``jax.vmap`` and ``jax.tree``
handle directly, and ``apply`` re-attaches them with ``nnx.merge`` at trace time:

- ``params``: every ``nnx.Param`` (what the optimizer trains);
- ``state``: everything else the module carries and updates as it runs, ``nnx.BatchStat``
  (BatchNorm's running statistics) and RNG streams (``nnx.Dropout``'s key and call count).
  A lane's RNG keys derive from its seed (`lane_rngs`), so each lane has its own stream.
  Any other variable type is refused, naming it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
from flax import nnx

from models import conventions, imports
from models.nets import CNN, MLP, Linear
from models.specs import DATA_ARGUMENTS, DataShape, ImportModelSpec, ModelSpec

PyTree = Any

# Built-in models are ordinary entries: a spec's fields (bar `name`) are the class's arguments.
MODELS: dict[str, Callable[..., nnx.Module]] = {"linear": Linear, "mlp": MLP, "cnn": CNN}


def _register_architectures() -> None:
    """The transformer and the ResNet live in files of their own (loaded with the registry)."""
    try:
        from models.resnet import ResNet
        from models.transformer import Transformer
    except ImportError:  # pragma: no cover - both ship with the package
        return
    MODELS.update(transformer=Transformer, resnet=ResNet)


_register_architectures()

# Variables a lane carries besides its params; anything else has no per-lane meaning here.
CARRIED_STATE = (nnx.BatchStat, nnx.RngState)
# Where a lane's state keeps the key its call-time `rngs` come from (a model whose __call__
# takes `rngs`): not an attribute name, so it never meets the module's own state.
CALL_KEY = "~call_rngs"


@dataclass(frozen=True)
class ModelFns:
    """Pure functions for one model architecture.

    ``init(key) -> (params, state)``: nested dicts of arrays (layer lists keyed by int index,
    e.g. ``params["layers"][0]["kernel"]``); ``state`` is ``{}`` for a model without
    BatchNorm or dropout. ``apply(params, state, x, train) -> (predictions, new_state)``:
    ``train=True`` is a training step (``model.train()``: batch statistics, dropout on, the
    state moves), ``train=False`` evaluation (``model.eval()``; the state comes back as it was).
    """

    init: Callable[[jax.Array], tuple[PyTree, PyTree]]
    apply: Callable[[PyTree, PyTree, jax.Array, bool], tuple[jax.Array, PyTree]]
    num_params: int
    # every parameter array's shape: what a memory estimate needs (kernels' output widths)
    param_shapes: tuple[tuple[int, ...], ...] = ()
    has_state: bool = False
    name: str = ""


def lane_rngs(key: jax.Array) -> nnx.Rngs:
    """A lane's RNG streams, all from its seed's key: ``params`` (initialisation), ``dropout``
    (nnx.Dropout's default stream) and a ``default`` for any other stream a model draws from."""
    return nnx.Rngs(jax.random.fold_in(key, 2), params=key, dropout=jax.random.fold_in(key, 1))


def model_factory(spec: ModelSpec, shape: DataShape) -> Callable[[nnx.Rngs], nnx.Module]:
    """``rngs -> module`` for this spec on data of this shape (the constructor resolved, its
    arguments checked against its signature)."""
    if isinstance(spec, ImportModelSpec):
        where = "model.import"
        try:
            ctor = imports.resolve(spec.import_)
        except imports.ImportFailed as err:
            raise ValueError(f"{where}: {err}") from None
        args = dict(spec.args)
    else:
        where = f"model.name: {spec.name}"
        ctor = MODELS[spec.name]
        args = spec.model_dump(exclude={"name"})
    if not callable(ctor):
        raise ValueError(f"{where}: {spec_label(spec)} is a {type(ctor).__name__}, not a class")
    kwargs = _constructor_arguments(ctor, args, shape, where)

    def build(rngs: nnx.Rngs) -> nnx.Module:
        module = ctor(**kwargs, rngs=rngs)
        if not isinstance(module, nnx.Module):
            raise TypeError(
                f"{where}: {spec_label(spec)}(...) returned a {type(module).__name__}, "
                "not an nnx.Module"
            )
        return module

    return build


def spec_label(spec: ModelSpec) -> str:
    return spec.import_ if isinstance(spec, ImportModelSpec) else spec.name


def _constructor_arguments(ctor, args: dict, shape: DataShape, where: str) -> dict[str, Any]:
    """The spec's arguments plus the data arguments the signature asks for."""
    try:
        # A class's own __init__: nnx.Module's metaclass hides it behind (*args, **kwargs).
        target = ctor.__init__ if isinstance(ctor, type) else ctor
        params = dict(inspect.signature(target).parameters)
        if isinstance(ctor, type):
            params.pop(next(iter(params)), None)  # self
    except (TypeError, ValueError):  # a builtin or C callable: pass the spec's args only
        return args
    names = set(params)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if "rngs" not in names and not takes_any:
        raise ValueError(f"{where}: {getattr(ctor, '__name__', ctor)} takes no `rngs` argument")
    unknown = [k for k in args if k not in names and not takes_any]
    if unknown:
        valid = sorted(n for n in names if n != "rngs" and n not in DATA_ARGUMENTS)
        raise ValueError(
            f"{where}: unknown argument(s) {', '.join(unknown)}; "
            f"{getattr(ctor, '__name__', 'it')} takes: {', '.join(valid) or 'none'}"
        )
    offered = {k: v for k, v in shape.arguments().items() if k in names and k not in args}
    kwargs = {**args, **offered, **_config_arguments(target, params, args, shape)}
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    missing = [
        n
        for n, p in params.items()
        if p.kind in named and p.default is inspect.Parameter.empty
        and n != "rngs" and n not in kwargs
    ]  # fmt: skip
    if missing:
        field = "model.args" if where == "model.import" else "model"
        raise ValueError(
            f"{field}.{missing[0]}: required by {getattr(ctor, '__name__', 'the model')} "
            "(no default, and the data does not fill it)"
        )
    return kwargs


def _config_arguments(target, params: dict, args: dict, shape: DataShape) -> dict[str, Any]:
    """Arguments annotated with a dataclass (`config: ModelConfig`), built from the nested
    mapping in `args` (or from nothing, where the argument has no default); data-filled
    fields (`num_classes`, ...) the mapping leaves out come from the data."""
    hints = conventions.type_hints(target)
    built = {}
    for name, param in params.items():
        cls = conventions.dataclass_type(hints.get(name, param.annotation))
        if cls is None or (name not in args and param.default is not inspect.Parameter.empty):
            continue
        built[name] = conventions.build_dataclass(
            cls, args.get(name, {}), f"model.args.{name}", shape.arguments()
        )
    return built


def make_model(spec: ModelSpec, shape: DataShape) -> ModelFns:
    """Build pure ``init``/``apply`` functions for ``spec`` on data of the given shape."""
    if shape.n_outputs < 1 or shape.n_features < 1:
        raise ValueError(f"model: n_outputs and the input size must be >= 1, got {shape}")
    factory = model_factory(spec, shape)
    key = (spec.model_dump_json(), shape, _identity(spec))
    if (built := _ABSTRACT.get(key)) is None:
        built = _ABSTRACT[key] = _abstract_build(spec, factory)
        while len(_ABSTRACT) > _ABSTRACT_MAX:  # oldest first
            _ABSTRACT.pop(next(iter(_ABSTRACT)), None)
    train_def, eval_def, shapes, num_params, key_leaves, call, axes = built

    def init(key: jax.Array) -> tuple[PyTree, PyTree]:
        with conventions.mesh_context(axes, traced=conventions.is_traced(key)):
            _, params, state = nnx.split(factory(lane_rngs(key)), nnx.Param, ...)
        state = _keys_as_data(nnx.to_pure_dict(state))
        if call.rngs:  # the lane's call-time stream: its own, from its seed
            state[CALL_KEY] = jax.random.key_data(jax.random.fold_in(key, 3))
        return nnx.to_pure_dict(params), state

    def apply(params: PyTree, state: PyTree, x: jax.Array, train: bool):
        # merge runs at trace time only; under jit it costs nothing per step.
        graphdef = train_def if train else eval_def
        carried = {k: v for k, v in state.items() if k != CALL_KEY}
        rngs = next_key = None
        if train and call.rngs:  # a fresh key each step; the next one goes on in the state
            step_key, next_key = jax.random.split(jax.random.wrap_key_data(state[CALL_KEY]))
            rngs = conventions.step_rngs(step_key)
        with conventions.mesh_context(axes, traced=conventions.is_traced(params, state, x)):
            module = nnx.merge(graphdef, params, _data_as_keys(carried, key_leaves))
            pred = module(conventions.on_mesh(x) if axes else x, **call.kwargs(train, rngs))
            if not train:  # eval leaves the state as it was
                return pred, state
            new_state = {}
            if key_leaves:
                _, _, moved = nnx.split(module, nnx.Param, ...)
                new_state = _keys_as_data(nnx.to_pure_dict(moved))
        if next_key is not None:
            new_state[CALL_KEY] = jax.random.key_data(next_key)
        return pred, new_state

    return ModelFns(
        init=init,
        apply=apply,
        num_params=num_params,
        param_shapes=shapes,
        has_state=bool(key_leaves) or call.rngs,
        name=spec_label(spec),
    )


def _identity(spec: ModelSpec) -> tuple[int, ...]:
    return imports.identity([spec.import_]) if isinstance(spec, ImportModelSpec) else ()


# The abstract builds made so far, by (spec, data shape): tracing a model's shapes costs tens of
# ms, and every spec check (each API submit among them) builds its model twice.
_ABSTRACT: dict[tuple, tuple] = {}
_ABSTRACT_MAX = 256


def _abstract_build(spec: ModelSpec, factory) -> tuple:
    """Shapes only, no FLOPs (cheap for big models): (train graphdef, eval graphdef, param
    shapes, param count, which state leaves are RNG keys, what `__call__` asks for, the mesh
    axes the parameters are annotated with)."""

    def build():
        return factory(lane_rngs(jax.random.key(0)))

    # Annotations are read first without a mesh (eager sharding off), then the model is built
    # inside a one-device mesh of the axes it names, as it will run (models/conventions.py).
    try:
        with nnx.use_eager_sharding(False):
            abstract = nnx.eval_shape(build)
        axes = conventions.axis_names(abstract)
        if axes:
            with conventions.mesh_context(axes, traced=False):
                abstract = nnx.eval_shape(build)
    except (ValueError, TypeError):  # ours, or the constructor's refusal: its words
        raise
    except Exception as err:  # the user's constructor: anything else may come out of it
        text = (str(err).strip().splitlines() or [""])[0][:300]
        raise ValueError(
            f"model: building {spec_label(spec)} raised {type(err).__name__}: {text}"
        ) from err
    for path, value in nnx.iter_graph(abstract):
        if isinstance(value, nnx.Variable) and not isinstance(value, (nnx.Param, *CARRIED_STATE)):
            where = ".".join(str(p) for p in path)
            raise TypeError(
                f"model: {spec_label(spec)} holds a {type(value).__name__} variable at {where!r}; "
                "a lane carries only nnx.Param (trained), nnx.BatchStat and RNG streams "
                "(nnx.Dropout): make it one of those, or a plain constant"
            )
    abstract.train()
    train_def, abstract_params, state = nnx.split(abstract, nnx.Param, ...)
    abstract.eval()
    eval_def = nnx.split(abstract, nnx.Param, ...)[0]
    key_leaves = tuple(
        jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)
        for leaf in jax.tree.leaves(nnx.to_pure_dict(state))
    )
    leaves = jax.tree.leaves(abstract_params)
    shapes = tuple(tuple(leaf.shape) for leaf in leaves)
    call = conventions.call_convention(abstract)
    num_params = sum(leaf.size for leaf in leaves)
    return train_def, eval_def, shapes, num_params, key_leaves, call, axes


def _keys_as_data(state: PyTree) -> PyTree:
    """RNG keys as their raw uint32 data: a lane's state is then plain arrays that `where`
    masks, numpy checkpoints and pickles without special cases."""

    def raw(leaf):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return jax.random.key_data(leaf)
        return leaf

    return jax.tree.map(raw, state)


def _data_as_keys(state: PyTree, key_leaves: tuple[bool, ...]) -> PyTree:
    if not any(key_leaves):
        return state
    leaves, treedef = jax.tree.flatten(state)
    wrapped = [
        jax.random.wrap_key_data(leaf) if is_key else leaf
        for leaf, is_key in zip(leaves, key_leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, wrapped)
