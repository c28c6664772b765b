"""The base of every spec model: strict fields, and a name chosen from a registry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import (
    BaseModel,
    ConfigDict,
)

# Light imports only (no JAX): the registries' names and defaults load without it, so a spec
# is validated, and a typo answered, in a fraction of a second (tests/sweeps/test_spec_light.py).

if TYPE_CHECKING:
    pass


class Strict(BaseModel):
    # strict: "500" is not a number, "true" not a boolean (an int still fills a float field).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


def _choose(kind: str, value: str, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise ValueError(f"unknown {kind} '{value}'; choose one of: {', '.join(valid)}")
    return value
