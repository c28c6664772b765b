"""A module imported on its first attribute access.

The registries (losses, optimizers, schedules) are read by the spec's validation, which must not
pay for JAX (seconds) to say that a key is misspelled. Their functions use `jnp`/`optax` only
when they run, so these modules bind the name to a `LazyModule` and import the real one then:

    if TYPE_CHECKING:
        import jax.numpy as jnp
    else:
        jnp = LazyModule("jax.numpy")
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for the module `name`; the first attribute read imports it."""

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:  # only for names the proxy itself lacks
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)

    def __repr__(self) -> str:
        state = "imported" if self._module is not None else "not imported yet"
        return f"<lazy module {self._name!r} ({state})>"
