"""The population program's compile options (sweeps/core/program.py)."""

import jax
import numpy as np
import pytest
from pydantic import TypeAdapter

from models import ModelSpec, make_model
from models.specs import DataShape
from sweeps.core.program import FAST_INIT_OPTIONS

IMAGES = DataShape(n_outputs=4, input_shape=(64,), num_classes=4, image_shape=(8, 8, 1))
TOKENS = DataShape(n_outputs=7, input_shape=(8,), num_classes=7, vocab_size=7)
FEATURES = DataShape(n_outputs=3, input_shape=(10,), num_classes=3)


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        ({"name": "linear"}, FEATURES),
        ({"name": "mlp", "hidden": [16, 16]}, FEATURES),
        ({"name": "cnn", "channels": [4, 8]}, IMAGES),
        ({"name": "resnet", "channels": [4, 8]}, IMAGES),
        ({"name": "transformer", "d_model": 16, "n_layers": 1, "n_heads": 2}, TOKENS),
    ],
)
def test_the_fast_init_compile_gives_the_same_parameters_bit_for_bit(model, shape):
    # The init program compiles at a lower XLA optimisation level (much faster, it runs once
    # per population); every built-in model must start from exactly the same weights.
    spec = TypeAdapter(ModelSpec).validate_python(model)
    init = make_model(spec, shape).init
    keys = jax.random.split(jax.random.key(3), 4)
    lowered = jax.jit(jax.vmap(init)).lower(keys)
    default = lowered.compile()(keys)
    fast = lowered.compile(compiler_options=FAST_INIT_OPTIONS)(keys)
    leaves = jax.tree.leaves(default)
    assert leaves and len(leaves) == len(jax.tree.leaves(fast))
    for a, b in zip(leaves, jax.tree.leaves(fast), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
