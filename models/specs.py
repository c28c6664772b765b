"""Pydantic configs for the models a sweep can train.

A model block is either a built-in, chosen by ``name`` (``{"name": "mlp", "hidden": [64]}``),
or the user's own, chosen by ``import`` (``{"import": "nets.py:MyNet", "args": {...}}``).
Built-ins are ordinary entries of the same registry (models/registry.py): a spec's fields
are the module's keyword arguments, exactly as ``args`` are for an imported one.
"""

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PositiveInt,
    Tag,
    ValidationInfo,
    field_validator,
)

from models.mup import MUP_MODELS, PARAMETRIZATIONS

Activation = Literal["relu", "gelu", "tanh", "sigmoid", "silu", "elu"]

# Strict configs: a typo'd key should fail loudly instead of being ignored, and a quoted "16"
# is a string, not a width.
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)
Rate = Annotated[float, Field(ge=0.0, lt=1.0)]

# μP's fields (models/mup.py). Left out of the spec's dump while they hold their defaults, so a
# spec that does not use them dumps, and hashes (sweeps/folder.py), as it did before they came.
Parametrization = Annotated[Literal[PARAMETRIZATIONS], Field(exclude_if=lambda v: v == "sp")]
UNSET = Field(None, exclude_if=lambda v: v is None)


def _only_builtin_mup(value: str, info: ValidationInfo, model: str) -> str:
    if value == "mup" and model not in MUP_MODELS:
        raise ValueError(
            f"mup is built into the {' and '.join(MUP_MODELS)} models; {model} has no μP "
            "(a model of your own applies μP itself and trains with parametrization: sp)"
        )
    return value


def _base_width_with_mup(value: int | None, info: ValidationInfo) -> int | None:
    """`base_width` is needed with parametrization: mup, and meaningless without it."""
    mup = info.data.get("parametrization") == "mup"
    if mup and value is None:
        raise ValueError(
            "needed with parametrization: mup: the width the LR is tuned at (μP equals the "
            "standard parametrization there)"
        )
    if not mup and value is not None:
        raise ValueError("only with parametrization: mup")
    return value


class LinearSpec(BaseModel):
    """A single affine layer: ``x @ W + b`` (inputs of any shape are flattened)."""

    model_config = _STRICT

    name: Literal["linear"]
    parametrization: Parametrization = "sp"

    _mup = field_validator("parametrization")(
        classmethod(lambda cls, v, info: _only_builtin_mup(v, info, "linear"))
    )


class MLPSpec(BaseModel):
    """Fully connected network: hidden layers with an activation, then a linear output.

    ``norm`` adds a BatchNorm or LayerNorm after each hidden layer, ``dropout`` a dropout after
    each activation (per lane: own batch statistics, own dropout keys).

    ``width`` scales every hidden size by width / max(hidden) (the widest becomes ``width``):
    the scalar a ``transfer.width`` axis sweeps. ``parametrization: mup`` trains it in μP
    around ``base_width`` (models/mup.py)."""

    model_config = _STRICT

    name: Literal["mlp"]
    hidden: list[PositiveInt] = Field(default_factory=lambda: [128, 128], min_length=1)
    activation: Activation = "relu"
    norm: Literal["none", "batch", "layer"] = "none"
    dropout: Rate = 0.0
    width: PositiveInt | None = UNSET
    parametrization: Parametrization = "sp"
    base_width: PositiveInt | None = Field(
        None, exclude_if=lambda v: v is None, validate_default=True
    )

    _base = field_validator("base_width")(
        classmethod(lambda cls, v, info: _base_width_with_mup(v, info))
    )


class CNNSpec(BaseModel):
    """Small conv net for image-shaped inputs (conv blocks, then dense layers)."""

    model_config = _STRICT

    name: Literal["cnn"]
    channels: list[PositiveInt] = Field(default_factory=lambda: [16, 32], min_length=1)
    kernel_size: PositiveInt = 3
    hidden: list[PositiveInt] = Field(default_factory=lambda: [64])
    activation: Activation = "relu"
    parametrization: Parametrization = "sp"

    _mup = field_validator("parametrization")(
        classmethod(lambda cls, v, info: _only_builtin_mup(v, info, "cnn"))
    )


class TransformerSpec(BaseModel):
    """Decoder-only transformer for token sequences (causal self-attention, pre-LayerNorm).

    ``d_model`` is its width (what ``transfer.width`` sweeps); ``parametrization: mup`` trains
    it in μP around ``base_width`` (a d_model; models/mup.py)."""

    model_config = _STRICT

    name: Literal["transformer"]
    d_model: PositiveInt = 64
    n_layers: PositiveInt = 2
    n_heads: PositiveInt = 4
    d_ff: PositiveInt | None = None
    dropout: Rate = 0.0
    parametrization: Parametrization = "sp"
    base_width: PositiveInt | None = Field(
        None, exclude_if=lambda v: v is None, validate_default=True
    )

    @field_validator("base_width")
    @classmethod
    def _base(cls, v: int | None, info: ValidationInfo) -> int | None:
        v = _base_width_with_mup(v, info)
        if v is not None and info.data.get("d_ff") is not None:
            raise ValueError(
                "with parametrization: mup, leave model.d_ff out (4 x d_model): a fixed d_ff "
                "does not grow with the width, which μP's hidden-layer rule assumes"
            )
        n_heads = info.data.get("n_heads")
        if v is not None and n_heads and v % n_heads:
            raise ValueError(f"{v} is not divisible by n_heads ({n_heads}): a base head size")
        return v


class ResNetSpec(BaseModel):
    """Small ResNet with BatchNorm for images (basic residual blocks, global average pool)."""

    model_config = _STRICT

    name: Literal["resnet"]
    channels: list[PositiveInt] = Field(default_factory=lambda: [16, 32], min_length=1)
    blocks_per_stage: PositiveInt = 1
    parametrization: Parametrization = "sp"

    _mup = field_validator("parametrization")(
        classmethod(lambda cls, v, info: _only_builtin_mup(v, info, "resnet"))
    )


# "nets.py:MyNet", "mypkg.nets:make_net", "/abs/nets.py:Outer.Inner"; "obj:MyNet#2" names an
# object handed to the Python API (models/imports.py).
IMPORT_REF = re.compile(r"^[^:\s]+:[A-Za-z_][A-Za-z0-9_.]*(#[0-9]+)?$")


def ref_name(ref: str) -> str:
    """What tables and run names call a referenced object: `nets.py:MyNet` -> `MyNet`."""
    return ref.rsplit(":", 1)[1].split("#")[0]


def check_import_ref(value: str) -> str:
    if not IMPORT_REF.match(value):
        raise ValueError(
            f"expected 'file.py:Name' (a file beside the spec) or 'package.module:Name', "
            f"got {value!r}"
        )
    return value


class ImportModelSpec(BaseModel):
    """The user's own model: ``import`` is ``"nets.py:MyNet"`` (a file, relative to the spec's
    folder) or ``"mypkg.nets:MyNet"`` (an importable module); ``args`` its keyword arguments."""

    model_config = ConfigDict(
        extra="forbid", strict=True, populate_by_name=True, serialize_by_alias=True
    )

    import_: str = Field(alias="import")
    args: dict[str, Any] = Field(default_factory=dict)
    parametrization: Parametrization = "sp"

    _ref = field_validator("import_")(classmethod(lambda cls, v: check_import_ref(v)))
    _mup = field_validator("parametrization")(
        classmethod(lambda cls, v, info: _only_builtin_mup(v, info, "your model"))
    )

    @property
    def name(self) -> str:
        """What tables and run names call it: the object's name (``MyNet``)."""
        return ref_name(self.import_)


BUILTIN_MODELS = (LinearSpec, MLPSpec, CNNSpec, TransformerSpec, ResNetSpec)
MODEL_NAMES = ("linear", "mlp", "cnn", "transformer", "resnet")


def _model_kind(value: Any) -> str | None:
    """Which member of the union a model block is: ``import`` wins, else its ``name``."""
    if isinstance(value, dict):
        return "import" if "import" in value or "import_" in value else value.get("name")
    return "import" if isinstance(value, ImportModelSpec) else getattr(value, "name", None)


ModelSpec = Annotated[
    Annotated[LinearSpec, Tag("linear")]
    | Annotated[MLPSpec, Tag("mlp")]
    | Annotated[CNNSpec, Tag("cnn")]
    | Annotated[TransformerSpec, Tag("transformer")]
    | Annotated[ResNetSpec, Tag("resnet")]
    | Annotated[ImportModelSpec, Tag("import")],
    Discriminator(
        _model_kind,
        custom_error_type="model_kind",
        custom_error_message=(
            "choose a built-in with model.name (" + ", ".join(MODEL_NAMES) + ") or your own "
            "with model.import ('nets.py:MyNet' beside the spec, or 'mypkg.nets:MyNet')"
        ),
    ),
]


# What the data offers a model's constructor, by argument name (see `DataShape`).
DATA_ARGUMENTS = ("n_outputs", "input_shape", "n_features", "num_classes", "image_shape",
                  "vocab_size")  # fmt: skip


@dataclass(frozen=True)
class DataShape:
    """What a model may need to know about the data: one example's shape and the outputs."""

    n_outputs: int
    input_shape: tuple[int, ...]
    num_classes: int | None = None
    image_shape: tuple[int, ...] | None = None
    vocab_size: int | None = None

    @property
    def n_features(self) -> int:
        return math.prod(self.input_shape)

    def arguments(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in DATA_ARGUMENTS}
