"""Numeric optimizer/schedule arguments: the registry's defaults under what a spec gives.

A spec gives each argument as a value (fixed) or a list (searched). Every consumer (the grid,
the random and tpe searchers, the LR range test) starts from `fixed_args` and resolves the
searched ones its own way; only names the registry entry takes are kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def fixed_args(given: Mapping[str, Any], defaults: Mapping[str, float]) -> dict[str, float]:
    """The defaults, overridden by the fixed (non-list) values given for known names."""
    fixed = {k: float(v) for k, v in given.items() if k in defaults and not isinstance(v, list)}
    return {**defaults, **fixed}


def searched_args(given: Mapping[str, Any], defaults: Mapping[str, float]) -> dict[str, list]:
    """The list-valued (searched) arguments among the known names, in the order given."""
    return {k: list(v) for k, v in given.items() if k in defaults and isinstance(v, list)}
