"""Pydantic configs for the models a sweep can train.

``ModelSpec`` is a discriminated union on ``name``, so a YAML/JSON block like
``{"name": "mlp", "hidden": [64]}`` validates straight into the right class and
an unknown name fails with an error listing the valid ones.
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

Activation = Literal["relu", "gelu", "tanh", "sigmoid", "silu", "elu"]

# Strict configs: a typo'd key should fail loudly instead of being ignored, and a quoted "16"
# is a string, not a width.
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class LinearSpec(BaseModel):
    """A single affine layer: ``x @ W + b``."""

    model_config = _STRICT

    name: Literal["linear"]


class MLPSpec(BaseModel):
    """Fully connected network: hidden layers with an activation, then a linear output."""

    model_config = _STRICT

    name: Literal["mlp"]
    hidden: list[PositiveInt] = Field(default_factory=lambda: [128, 128], min_length=1)
    activation: Activation = "relu"


class CNNSpec(BaseModel):
    """Small conv net for image-shaped inputs (conv blocks, then dense layers)."""

    model_config = _STRICT

    name: Literal["cnn"]
    channels: list[PositiveInt] = Field(default_factory=lambda: [16, 32], min_length=1)
    kernel_size: PositiveInt = 3
    hidden: list[PositiveInt] = Field(default_factory=lambda: [64])
    activation: Activation = "relu"


ModelSpec = Annotated[LinearSpec | MLPSpec | CNNSpec, Field(discriminator="name")]

MODEL_NAMES = ("linear", "mlp", "cnn")
