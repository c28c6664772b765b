"""Flax's conventions as Flax's docs write them (models/conventions.py, models/registry.py):
call-time rngs and mode flags, sharding annotations on one device, config dataclasses.

The tutorial-style files are in tests/flax_tutorials.py; end-to-end sweeps of them through the
CLI are in tests/sweeps/test_flax_tutorials.py.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import ImportModelSpec, imports, make_model
from models.registry import CALL_KEY
from models.specs import DataShape

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flax_tutorials import MINIGPT_ARGS, VIT_ARGS, write_tutorials  # noqa: E402

IMAGES = DataShape(n_outputs=10, input_shape=(8, 8, 1), num_classes=10, image_shape=(8, 8, 1))
TOKENS = DataShape(n_outputs=20, input_shape=(16,), num_classes=20, vocab_size=20)

MASKER = textwrap.dedent(
    """
    import jax.numpy as jnp
    from flax import nnx

    class Masker(nnx.Module):
        '''Returns its dropout mask (scaled): what the call-time keys drew.'''

        def __init__(self, n_features, *, rngs):
            self.a = nnx.Linear(n_features, 1, rngs=rngs)
            self.drop = nnx.Dropout(0.5)

        def __call__(self, x, rngs: nnx.Rngs | None = None):
            return self.drop(jnp.ones_like(x), rngs=rngs) + 0 * self.a(x)
    """
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = write_tutorials(tmp_path_factory.mktemp("tutorials"))
    (folder / "masker.py").write_text(MASKER)
    return folder


def _fns(folder, ref, shape, **args):
    source, name = ref.split(":")
    return make_model(ImportModelSpec(import_=imports.canonical(ref, folder), args=args), shape)


# ------------------------------------------------------------------ call-time rngs
def test_call_time_dropout_keys_per_lane_per_step_and_from_the_seed(folder):
    fns = _fns(folder, "masker.py:Masker", DataShape(1, (64,)))
    x = jnp.ones((1, 64))
    apply = jax.jit(fns.apply, static_argnums=3)

    def masks(key, steps=3):
        params, state = fns.init(key)
        out = []
        for _ in range(steps):
            mask, state = apply(params, state, x, True)
            out.append(np.asarray(mask))
        return out

    a, b, again = masks(jax.random.key(0)), masks(jax.random.key(1)), masks(jax.random.key(0))
    assert {tuple(np.unique(m)) for m in a} == {(0.0, 2.0)}  # dropout at rate 0.5 drew them
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[1], a[2])  # per step
    assert not np.array_equal(a[0], b[0])  # per lane (another seed)
    for m, n in zip(a, again, strict=True):  # reproducible from the seed
        np.testing.assert_array_equal(m, n)
    # a vmapped population draws the same masks lane by lane
    params, state = jax.vmap(fns.init)(jnp.stack([jax.random.key(0), jax.random.key(1)]))
    lanes, _ = jax.vmap(lambda p, s: fns.apply(p, s, x, True))(params, state)
    np.testing.assert_array_equal(lanes[0], a[0])
    np.testing.assert_array_equal(lanes[1], b[0])


def test_evaluation_passes_no_keys_and_keeps_the_state(folder):
    fns = _fns(folder, "masker.py:Masker", DataShape(1, (64,)))
    params, state = fns.init(jax.random.key(0))
    assert fns.has_state and set(state) == {CALL_KEY}
    mask, after = fns.apply(params, state, jnp.ones((1, 64)), False)
    np.testing.assert_array_equal(mask, 1.0)  # no dropout in evaluation
    np.testing.assert_array_equal(after[CALL_KEY], state[CALL_KEY])


def test_tutorial_cnn_same_params_other_keys_differ_in_training_only(folder):
    """The MNIST tutorial's CNN as written: lanes with lane 0's params everywhere still draw
    their own dropout masks (and agree exactly in evaluation)."""
    fns = _fns(folder, "cnn.py:CNN", IMAGES)
    params, state = jax.jit(jax.vmap(fns.init))(jax.random.split(jax.random.key(0), 2))
    params = jax.tree.map(lambda p: jnp.stack([p[0], p[0]]), params)
    x = jax.random.normal(jax.random.key(3), (4, 8, 8, 1))
    run = jax.jit(
        jax.vmap(lambda p, s, train: fns.apply(p, s, x, train)[0], in_axes=(0, 0, None)),
        static_argnums=2,
    )
    train, evaluation = run(params, state, True), run(params, state, False)
    assert train.shape == (2, 4, 10)
    assert not np.allclose(train[0], train[1])
    np.testing.assert_allclose(evaluation[0], evaluation[1], rtol=1e-6)


def test_train_and_deterministic_flags_follow_the_mode(folder):
    fns = _fns(folder, "cnn.py:Flagged", IMAGES)  # asserts train is not deterministic itself
    params, state = fns.init(jax.random.key(0))
    x = jnp.ones((3, 8, 8, 1))
    a, _ = fns.apply(params, state, x, False)
    b, _ = fns.apply(params, state, x, False)
    c, _ = fns.apply(params, state, x, True)
    np.testing.assert_array_equal(a, b)  # deterministic in evaluation
    assert not np.allclose(a, c)  # dropout in training


# ------------------------------------------------------------------ sharding annotations
def test_sharding_annotations_run_on_one_device(folder):
    fns = _fns(folder, "minigpt.py:MiniGPT", TOKENS, **MINIGPT_ARGS)
    params, state = jax.jit(fns.init)(jax.random.key(0))
    x = jnp.zeros((2, 16), jnp.int32)
    pred, _ = jax.jit(fns.apply, static_argnums=3)(params, state, x, True)
    assert pred.shape == (2, 16, 20) and bool(jnp.all(jnp.isfinite(pred)))
    # the arrays a lane carries are plain single-device arrays, not tied to a mesh
    assert all(
        isinstance(leaf.sharding, jax.sharding.SingleDeviceSharding)
        for leaf in jax.tree.leaves((params, pred))
    )


# ------------------------------------------------------------------ config dataclasses
def test_config_dataclass_from_a_nested_mapping_with_data_fields(folder):
    fns = _fns(folder, "vit.py:VisionTransformer", IMAGES, **VIT_ARGS)
    params, _ = jax.eval_shape(fns.init, jax.random.key(0))
    assert params["classifier"]["kernel"].shape == (8, 10)  # num_classes from the data
    assert params["patch_embeddings"]["kernel"].shape == (4, 4, 1, 8)
    assert len(params["encoder"]["layers"]) == 1


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"num_layerz": 1}, "model.args.config.num_layerz: unknown field; ModelConfig has: "),
        ({"sharding": {"bogus": 1}}, "model.args.config.sharding.bogus: unknown field"),
        ({"num_layers": "2"}, "model.args.config.num_layers: expected int, got str '2'"),
        ({"use_bfloat16": 1}, "model.args.config.use_bfloat16: expected bool, got int"),
        (3, "model.args.config: expected a mapping of ModelConfig's fields, got int"),
    ],
)
def test_config_dataclass_refusals_name_the_field(folder, config, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        _fns(folder, "vit.py:VisionTransformer", IMAGES, config=config)


def test_a_missing_argument_is_named(folder):
    args = {k: v for k, v in MINIGPT_ARGS.items() if k != "maxlen"}
    with pytest.raises(ValueError, match=r"^model.args.maxlen: required by MiniGPT"):
        _fns(folder, "minigpt.py:MiniGPT", TOKENS, **args)
