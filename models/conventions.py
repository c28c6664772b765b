"""Flax's own conventions, accepted as Flax's docs write them (no change to the user's code).

- **Call-time randomness and flags** (`CallConvention`): the MNIST tutorial's CNN and the ViT
  example build ``nnx.Dropout(rate)`` without rngs and take the keys at call time,
  ``__call__(self, x, rngs: nnx.Rngs | None = None)``; other models ask for ``train`` /
  ``training`` / ``deterministic``. A training step passes a fresh per-lane ``nnx.Rngs`` and
  the training flags; evaluation passes no keys and the evaluation flags.
- **Sharding annotations on one device** (`axis_names`, `mesh_context`): the MiniGPT example
  annotates parameters (``kernel_metadata={'out_sharding': P(None, 'model')}``,
  ``nnx.with_partitioning``) and ends with ``reshard(...)``; both need a mesh. We build and
  apply such a model inside a trivial mesh over one device, every axis it names of size 1 and
  of type Auto, so the same file runs here and on a sharded cluster.
- **Config dataclasses** (`build_dataclass`): ``VisionTransformer(config: ModelConfig, *,
  rngs)`` gets its ``ModelConfig`` built from the nested mapping in ``model.args``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import PartitionSpec

# Names of a boolean `__call__` argument, and the value it takes in a training step.
TRAIN_FLAGS = {"train": True, "training": True, "is_training": True, "deterministic": False}


@dataclass(frozen=True)
class CallConvention:
    """What a module's ``__call__`` asks for besides the batch."""

    rngs: bool = False  # takes `rngs`: dropout keys at call time
    rngs_required: bool = False  # ... without a default (evaluation then passes None)
    flags: tuple[str, ...] = ()  # names in TRAIN_FLAGS it takes

    def kwargs(self, train: bool, rngs: nnx.Rngs | None) -> dict[str, Any]:
        out: dict[str, Any] = {f: TRAIN_FLAGS[f] == train for f in self.flags}
        if self.rngs and (train or self.rngs_required):
            out["rngs"] = rngs if train else None
        return out


def call_convention(module: nnx.Module) -> CallConvention:
    try:
        params = inspect.signature(type(module).__call__).parameters
    except (TypeError, ValueError):
        return CallConvention()
    named = {
        n: p
        for n, p in params.items()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }
    rngs = named.get("rngs")
    return CallConvention(
        rngs=rngs is not None,
        rngs_required=rngs is not None and rngs.default is inspect.Parameter.empty,
        flags=tuple(n for n in TRAIN_FLAGS if n in named),
    )


def step_rngs(key: jax.Array) -> nnx.Rngs:
    """One training step's call-time streams (``dropout``, and ``default`` for any other)."""
    return nnx.Rngs(jax.random.fold_in(key, 0), dropout=key)


# ------------------------------------------------------------------------------ meshes
_SHARDING_KEYS = ("out_sharding", "sharding_names", "sharding")


def axis_names(module: nnx.Module) -> tuple[str, ...]:
    """The mesh axes a module's variables are annotated with, in order of appearance."""
    names: list[str] = []
    for _, value in nnx.iter_graph(module):
        if not isinstance(value, nnx.Variable):
            continue
        metadata = value.get_metadata()
        if metadata.get("mesh") is not None:
            continue  # the annotation brings its own mesh
        for key in _SHARDING_KEYS:
            for name in _names_in(metadata.get(key)):
                if name not in names:
                    names.append(name)
    return tuple(names)


def _names_in(spec: Any) -> Iterator[str]:
    if isinstance(spec, str):
        yield spec
    elif isinstance(spec, PartitionSpec | tuple | list):
        for part in spec:
            yield from _names_in(part)


def mesh_context(names: tuple[str, ...], traced: bool) -> contextlib.AbstractContextManager:
    """A one-device mesh with these axes (each of size 1, Auto: arrays stay plain single-device
    arrays). Inside a trace only an abstract mesh may be set (`jax.set_mesh` refuses jit)."""
    if not names:
        return contextlib.nullcontext()
    mesh = jax.sharding.Mesh(
        np.array(jax.devices()[:1]).reshape((1,) * len(names)),
        names,
        axis_types=(jax.sharding.AxisType.Auto,) * len(names),
    )
    if traced:
        return jax.sharding.use_abstract_mesh(mesh.abstract_mesh)
    return jax.set_mesh(mesh)


def on_mesh(x: jax.Array) -> jax.Array:
    """The batch placed on the current mesh (replicated): a model that reshards to its input's
    sharding (MiniGPT: ``reshard(out, jax.typeof(inputs).sharding)``) needs one there."""
    return jax.sharding.reshard(x, PartitionSpec())


def is_traced(*trees: Any) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(trees))


# ------------------------------------------------------------------- config dataclasses
def dataclass_type(annotation: Any) -> type | None:
    """The dataclass an annotation names (``Config``, ``Config | None``), else None."""
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        found = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(found) == 1:
            return dataclass_type(found[0])
    return None


def type_hints(obj: Any) -> dict[str, Any]:
    """Resolved annotations (files with ``from __future__ import annotations`` hold strings);
    {} where they do not resolve."""
    try:
        return typing.get_type_hints(obj)
    except Exception:  # an unresolvable forward reference: no annotations to go by
        return {}


def build_dataclass(cls: type, value: Any, where: str, data: Mapping[str, Any]) -> Any:
    """An instance of dataclass `cls` from a nested mapping (nested dataclass fields too);
    fields named like a data argument (`num_classes`, `n_outputs`, ...) the mapping leaves
    out come from `data`. ValueError naming the field (``model.args.config.num_layers``)."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(
            f"{where}: expected a mapping of {cls.__name__}'s fields, got {type(value).__name__}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in value if k not in fields]
    if unknown:
        raise ValueError(
            f"{where}.{unknown[0]}: unknown field; {cls.__name__} has: {', '.join(fields)}"
        )
    hints = type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, raw in value.items():
        kwargs[name] = _field_value(hints.get(name), raw, f"{where}.{name}", data)
    for name in fields:
        if name not in kwargs and name in data and data[name] is not None:
            kwargs[name] = data[name]
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ValueError(f"{where}.{missing[0]}: required ({cls.__name__} has no default)")
    try:
        return cls(**kwargs)
    except Exception as err:  # the dataclass's own checks (__post_init__)
        raise ValueError(
            f"{where}: {cls.__name__}(...) raised {type(err).__name__}: {err}"
        ) from None


_SCALARS = {
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    str: lambda v: isinstance(v, str),
}


def _field_value(annotation: Any, raw: Any, where: str, data: Mapping[str, Any]) -> Any:
    nested = dataclass_type(annotation)
    if nested is not None and isinstance(raw, Mapping):
        return build_dataclass(nested, raw, where, data)
    if annotation in _SCALARS and not _SCALARS[annotation](raw):
        raise ValueError(
            f"{where}: expected {annotation.__name__}, got {type(raw).__name__} {raw!r}"
        )
    if typing.get_origin(annotation) is tuple and isinstance(raw, list):
        return tuple(raw)  # a frozen config must stay hashable: nnx keeps it in the graphdef
    return raw
