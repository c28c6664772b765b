"""The optimizer registry's facts match what optax actually keeps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from sweeps.core.optimizers import OPTIMIZERS


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_state_arrays_count_the_parameter_sized_arrays_of_optax_state(name):
    params = {"w": jnp.zeros((7, 13)), "b": jnp.zeros(13)}
    size = sum(p.size for p in jax.tree.leaves(params))
    state = OPTIMIZERS[name].build().init(params)
    big = sum(leaf.size for leaf in jax.tree.leaves(state) if leaf.size >= 13)
    assert big == OPTIMIZERS[name].state_arrays * size
