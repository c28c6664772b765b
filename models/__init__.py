"""Model package: pydantic specs, NNX modules and pure init/apply functions."""

from models.registry import ModelFns, make_model
from models.specs import MODEL_NAMES, CNNSpec, LinearSpec, MLPSpec, ModelSpec

__all__ = [
    "MODEL_NAMES",
    "CNNSpec",
    "LinearSpec",
    "MLPSpec",
    "ModelFns",
    "ModelSpec",
    "make_model",
]
