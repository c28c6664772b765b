"""Model package: pydantic specs, NNX modules and pure init/apply functions.

The specs (`models.specs`) are light; `make_model` and `ModelFns` (JAX, Flax) load on first
use, so validating a spec never imports JAX.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from models.specs import (
    MODEL_NAMES,
    CNNSpec,
    ImportModelSpec,
    LinearSpec,
    MLPSpec,
    ModelSpec,
    ResNetSpec,
    TransformerSpec,
)

if TYPE_CHECKING:
    from models.registry import ModelFns, make_model

__all__ = [
    "MODEL_NAMES",
    "CNNSpec",
    "ImportModelSpec",
    "LinearSpec",
    "MLPSpec",
    "ModelFns",
    "ModelSpec",
    "ResNetSpec",
    "TransformerSpec",
    "make_model",
]


def __getattr__(name: str) -> Any:
    if name in ("ModelFns", "make_model"):
        from models import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
