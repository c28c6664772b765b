"""Tests for the model package: specs, shapes, param counts, and jit/vmap purity.

Speed note: on CPU most of the time goes into compiling vmapped random inits,
and eager JAX caches those per shape. So the numeric tests share one data shape
(64 features -> 10 outputs), 4 lanes and 10-wide layers, and shape-only checks
use ``jax.eval_shape`` (trace, no compile).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from pydantic import TypeAdapter, ValidationError

from models import MODEL_NAMES, CNNSpec, LinearSpec, MLPSpec, ModelSpec
from models import make_model as _make_model
from models.registry import MODELS
from models.specs import DataShape

SPEC = TypeAdapter(ModelSpec)
KEYS = jax.random.split(jax.random.key(0), 4)
X = jax.random.normal(jax.random.key(42), (5, 64), jnp.float32)

LANE_MODELS = [
    pytest.param(({"name": "linear"}, {}), id="linear"),
    pytest.param(({"name": "mlp", "hidden": [10], "activation": "tanh"}, {}), id="mlp"),
    # 8x8 -> pooled 4x4x4 = 64 -> 10: same head shape as the others.
    pytest.param(
        ({"name": "cnn", "channels": [4], "hidden": []}, {"image_shape": (8, 8, 1)}), id="cnn"
    ),
]


class _Stateless:
    """The registry's functions seen as `init(key) -> params`, `apply(params, x)`: the models
    here carry no state (no BatchNorm, no dropout)."""

    def __init__(self, fns):
        self.fns, self.num_params = fns, fns.num_params

    def init(self, key):
        params, state = self.fns.init(key)
        assert state == {}
        return params

    def apply(self, params, x):
        return self.fns.apply(params, {}, x, False)[0]


def make_model(spec, *, n_features, n_outputs, image_shape=None):
    shape = DataShape(n_outputs=n_outputs, input_shape=(n_features,), image_shape=image_shape)
    return _Stateless(_make_model(spec, shape))


def _lane(stacked, i: int):
    return jax.tree.map(lambda leaf: leaf[i], stacked)


def test_registry_covers_model_names():
    assert set(MODELS) == set(MODEL_NAMES)


def test_linear_apply_is_x_at_w_plus_b():
    fns = make_model(LinearSpec(name="linear"), n_features=64, n_outputs=10)
    params = fns.init(KEYS[0])
    w, b = params["dense"]["kernel"], params["dense"]["bias"]
    assert w.shape == (64, 10) and b.shape == (10,)
    # Default bias init is zeros; set it so the test also checks the bias term.
    params["dense"]["bias"] = b = jnp.arange(10.0)
    np.testing.assert_allclose(fns.apply(params, X), X @ w + b, rtol=1e-5, atol=1e-5)


def test_num_params_linear_and_mlp():
    assert make_model(LinearSpec(name="linear"), n_features=7, n_outputs=3).num_params == 7 * 3 + 3
    mlp = make_model(MLPSpec(name="mlp", hidden=[5, 4]), n_features=7, n_outputs=3)
    assert mlp.num_params == (7 * 5 + 5) + (5 * 4 + 4) + (4 * 3 + 3)
    # ...and agrees with what init actually produces.
    shapes = jax.eval_shape(mlp.init, KEYS[0])
    assert sum(leaf.size for leaf in jax.tree.leaves(shapes)) == mlp.num_params


def test_mlp_output_shape():
    fns = make_model(MLPSpec(name="mlp", hidden=[16, 8]), n_features=10, n_outputs=4)
    out = jax.eval_shape(lambda: fns.apply(fns.init(KEYS[0]), jnp.zeros((5, 10))))
    assert out.shape == (5, 4) and out.dtype == jnp.float32


@pytest.mark.parametrize("image_shape", [(8, 8, 1), (4, 4, 3), (1, 6, 2)])
def test_cnn_output_shape(image_shape):
    n_features = int(np.prod(image_shape))
    fns = make_model(
        CNNSpec(name="cnn", channels=[4, 8, 8]),
        n_features=n_features,
        n_outputs=10,
        image_shape=image_shape,
    )
    out = jax.eval_shape(lambda: fns.apply(fns.init(KEYS[0]), jnp.zeros((3, n_features))))
    assert out.shape == (3, 10) and out.dtype == jnp.float32


def test_cnn_needs_image_shape():
    with pytest.raises(ValueError, match="cnn needs image-shaped inputs"):
        make_model(CNNSpec(name="cnn"), n_features=64, n_outputs=10)
    with pytest.raises(ValueError, match="image_shape"):
        make_model(CNNSpec(name="cnn"), n_features=63, n_outputs=10, image_shape=(8, 8, 1))


@pytest.fixture(scope="module", params=LANE_MODELS)
def lanes(request):
    """A model and its 4 lanes of params from ``vmap(init)``, built once per model."""
    spec, kw = request.param
    fns = make_model(SPEC.validate_python(spec), n_features=64, n_outputs=10, **kw)
    return fns, jax.vmap(fns.init)(KEYS)


def test_vmapped_init_distinct_per_key_and_deterministic(lanes):
    fns, stacked = lanes
    # Same keys in reverse order -> the same params in reverse order: each lane
    # depends only on its own key (deterministic, no hidden RNG state).
    reversed_ = jax.vmap(fns.init)(KEYS[::-1])
    for leaf, leaf_rev in zip(jax.tree.leaves(stacked), jax.tree.leaves(reversed_), strict=True):
        np.testing.assert_array_equal(leaf, leaf_rev[::-1])
    # Kernels (biases init to zero) must differ between every pair of lanes.
    for path, leaf in jax.tree_util.tree_leaves_with_path(stacked):
        if "kernel" in jax.tree_util.keystr(path):
            flat = np.asarray(leaf).reshape(4, -1)
            for i in range(4):
                for j in range(i + 1, 4):
                    assert not np.allclose(flat[i], flat[j]), (path, i, j)


def test_apply_jit_vmap_matches_per_lane(lanes):
    fns, stacked = lanes
    out = jax.jit(jax.vmap(fns.apply, in_axes=(0, None)))(stacked, X)
    assert out.shape == (4, 5, 10)
    apply = jax.jit(fns.apply)
    for i in range(4):
        np.testing.assert_allclose(out[i], apply(_lane(stacked, i), X), rtol=1e-5, atol=1e-5)
    assert not np.allclose(out[0], out[1])


def test_params_train_under_scan_of_vmapped_step():
    """The trainer's pattern: jit(scan(vmap(step))) with optax on the params pytree."""
    fns = make_model(MLPSpec(name="mlp", hidden=[10]), n_features=64, n_outputs=10)
    y = X[:, :10]
    lrs = jnp.array([0.0, 0.01, 0.03, 0.1])
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.0)

    def loss(params):
        return jnp.mean((fns.apply(params, X) - y) ** 2)

    def step(carry, _):
        params, opt_state = carry
        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    def init_lane(key, lr):
        params = fns.init(key)
        opt_state = opt.init(params)
        opt_state.hyperparams["learning_rate"] = lr
        return params, opt_state

    carry = jax.vmap(init_lane)(KEYS, lrs)
    run = jax.jit(lambda c: jax.lax.scan(jax.vmap(step), c, None, length=20))
    _, losses = run(carry)
    assert losses.shape == (20, 4)
    np.testing.assert_allclose(losses[-1, 0], losses[0, 0], rtol=1e-6)  # lr=0 lane frozen
    assert bool(jnp.all(losses[-1, 1:] < losses[0, 1:]))


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValidationError) as err:
        SPEC.validate_python({"name": "gpt5"})
    message = str(err.value)
    for name in MODEL_NAMES:
        assert name in message
    assert "model.import" in message


def test_spec_rejects_extra_key_and_empty_hidden():
    with pytest.raises(ValidationError, match="extra"):
        SPEC.validate_python({"name": "mlp", "hidden": [8], "dropuot": 0.1})
    with pytest.raises(ValidationError, match="at least 1"):
        SPEC.validate_python({"name": "mlp", "hidden": []})
    with pytest.raises(ValidationError):
        SPEC.validate_python({"name": "cnn", "channels": [0]})
    with pytest.raises(ValidationError):
        SPEC.validate_python({"name": "mlp", "activation": "swish"})


def test_spec_defaults_and_dispatch():
    mlp = SPEC.validate_python({"name": "mlp"})
    assert isinstance(mlp, MLPSpec) and mlp.hidden == [128, 128] and mlp.activation == "relu"
    cnn = SPEC.validate_python({"name": "cnn"})
    assert isinstance(cnn, CNNSpec)
    assert (cnn.channels, cnn.kernel_size, cnn.hidden) == ([16, 32], 3, [64])
    assert isinstance(SPEC.validate_python({"name": "linear"}), LinearSpec)
