"""Tests for the NNX architectures in models.transformer and models.resnet.

Speed note (about 20 s on 2 CPU cores): tiny sizes throughout (block size 8, d_model 16,
8x8 images with 4-8 channels); shape-only and argument checks go through ``nnx.eval_shape``
(trace, no compile); repeated forward passes and the Adam checks use one ``nnx.jit`` each,
since eager JAX compiles every op of a model separately.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from models.resnet import ResNet
from models.transformer import Transformer

VOCAB, BLOCK = 7, 8
TINY_TRANSFORMER = dict(
    vocab_size=VOCAB, n_outputs=VOCAB, input_shape=(BLOCK,), d_model=16, n_layers=2, n_heads=2
)
TINY_RESNET = dict(n_outputs=4, input_shape=(64,), image_shape=(8, 8, 1), channels=(4, 8))
TOKENS = jax.random.randint(jax.random.key(1), (3, BLOCK), 0, VOCAB)
IMAGES = jax.random.normal(jax.random.key(2), (6, 64), jnp.float32)


def _transformer(seed: int = 0, **overrides) -> Transformer:
    return Transformer(**{**TINY_TRANSFORMER, **overrides}, rngs=nnx.Rngs(seed))


def _resnet(seed: int = 0, **overrides) -> ResNet:
    return ResNet(**{**TINY_RESNET, **overrides}, rngs=nnx.Rngs(seed))


def _variable_types(model: nnx.Module) -> set[type]:
    return {type(v) for _, v in nnx.iter_graph(model) if isinstance(v, nnx.Variable)}


def _trained_loss_ratio(model, loss_fn, batch, steps: int, lr: float) -> float:
    """Final / initial loss after `steps` of Adam on one fixed batch."""
    optimizer = nnx.Optimizer(model, optax.adam(lr), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, batch):
        loss, grads = nnx.value_and_grad(loss_fn)(model, *batch)
        optimizer.update(model, grads)
        return loss

    first = step(model, optimizer, batch)
    for _ in range(steps - 1):
        last = step(model, optimizer, batch)
    assert np.isfinite(float(last))
    return float(last) / float(first)


# --- Transformer -------------------------------------------------------------------------


def test_transformer_output_shape_and_dtype():
    def build_and_apply(tokens):
        return _transformer(n_outputs=5)(tokens)

    out = nnx.eval_shape(build_and_apply, jnp.zeros((3, BLOCK), jnp.int32))
    assert out.shape == (3, BLOCK, 5) and out.dtype == jnp.float32
    # Shorter sequences than the block size are fine; longer ones are refused.
    assert nnx.eval_shape(build_and_apply, jnp.zeros((2, 3), jnp.int32)).shape == (2, 3, 5)
    with pytest.raises(ValueError, match="block size"):
        nnx.eval_shape(build_and_apply, jnp.zeros((2, BLOCK + 1), jnp.int32))


def test_transformer_is_causal():
    model = _transformer()
    apply = nnx.jit(lambda model, tokens: model(tokens))  # one compile for the calls below
    logits = apply(model, TOKENS)
    other = jax.random.randint(jax.random.key(3), TOKENS.shape, 0, VOCAB)
    for t in (0, 3, BLOCK - 2):
        # Replace tokens t+1.. (guaranteed different): positions <= t must not notice.
        changed = TOKENS.at[:, t + 1 :].set((TOKENS[:, t + 1 :] + 1 + other[:, t + 1 :]) % VOCAB)
        changed_logits = apply(model, changed)
        np.testing.assert_allclose(changed_logits[:, : t + 1], logits[:, : t + 1], atol=1e-6)
        # ...while later positions do (so the check above is not vacuous).
        assert not np.allclose(changed_logits[:, t + 1 :], logits[:, t + 1 :], atol=1e-4)
    # And position t does depend on earlier tokens, not only on token t.
    changed = TOKENS.at[:, 0].set((TOKENS[:, 0] + 1) % VOCAB)
    assert not np.allclose(apply(model, changed)[:, -1], logits[:, -1], atol=1e-4)


def test_transformer_without_dropout_holds_only_params():
    model = _transformer(dropout=0.0)
    _, params, rest = nnx.split(model, nnx.Param, ...)
    assert jax.tree.leaves(rest) == []
    assert _variable_types(model) == {nnx.Param}
    assert jax.tree.leaves(params)


def test_transformer_dropout_random_in_train_mode_fixed_in_eval_mode():
    model = _transformer(dropout=0.5)
    # Besides Params, only the Dropout layers' RNG streams (key + call counter).
    _, _, rest = nnx.split(model, nnx.Param, ...)
    rest_types = {
        type(v) for v in jax.tree.leaves(rest, is_leaf=lambda x: isinstance(x, nnx.Variable))
    }
    assert rest_types and all(issubclass(t, nnx.RngState) for t in rest_types)
    assert not any(issubclass(t, nnx.Cache) for t in _variable_types(model))

    model.train()
    assert not np.allclose(model(TOKENS), model(TOKENS))
    model.eval()
    np.testing.assert_array_equal(model(TOKENS), model(TOKENS))
    # Same seed, same parameters whatever the dropout rate; eval mode is then the same model.
    plain = _transformer(dropout=0.0)
    assert jax.tree.all(
        jax.tree.map(np.array_equal, nnx.state(plain, nnx.Param), nnx.state(model, nnx.Param))
    )
    np.testing.assert_allclose(model(TOKENS), plain(TOKENS), atol=1e-6)


def test_transformer_adam_learns_next_token():
    # Sequences counting up mod VOCAB from a random start: the next token is predictable.
    starts = jax.random.randint(jax.random.key(4), (16, 1), 0, VOCAB)
    seq = (starts + jnp.arange(BLOCK + 1)) % VOCAB
    batch = (seq[:, :-1], seq[:, 1:])

    def loss_fn(model, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

    model = _transformer()
    initial = float(loss_fn(model, *batch))
    assert initial == pytest.approx(np.log(VOCAB), rel=0.1)  # near-uniform at init
    assert _trained_loss_ratio(model, loss_fn, batch, steps=40, lr=1e-2) < 0.3


@pytest.mark.parametrize(
    ("overrides", "argument"),
    [
        ({"d_model": 60, "n_heads": 7}, r"d_model \(60\) must be divisible by n_heads \(7\)"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"n_outputs": -1}, "n_outputs"),
        ({"input_shape": (8, 8)}, "input_shape"),
        ({"input_shape": (0,)}, "input_shape"),
        ({"n_layers": 0}, "n_layers"),
        ({"n_heads": 0}, "n_heads"),
        ({"d_ff": 0}, "d_ff"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
    ],
)
def test_transformer_bad_arguments(overrides, argument):
    with pytest.raises(ValueError, match=argument):
        nnx.eval_shape(lambda: _transformer(**overrides))


def test_transformer_rngs_streams():
    # Params-only Rngs are enough without dropout; with dropout a stream is required.
    nnx.eval_shape(lambda: Transformer(**TINY_TRANSFORMER, rngs=nnx.Rngs(params=0)))
    with pytest.raises(ValueError, match="dropout"):
        Transformer(**TINY_TRANSFORMER, dropout=0.1, rngs=nnx.Rngs(params=0))


# --- ResNet ------------------------------------------------------------------------------


def test_resnet_output_shape_and_dtype():
    out = nnx.eval_shape(lambda x: _resnet()(x), IMAGES)
    assert out.shape == (6, 4) and out.dtype == jnp.float32
    # Downsampling stops at 1x1, so many stages on a tiny image still work.
    deep = nnx.eval_shape(lambda x: _resnet(channels=(2, 2, 2, 2, 2, 2))(x), IMAGES)
    assert deep.shape == (6, 4)


def test_resnet_holds_params_and_batch_stats_only():
    abstract = nnx.eval_shape(lambda: _resnet())  # the module with ShapeDtypeStruct values
    assert _variable_types(abstract) == {nnx.Param, nnx.BatchStat}


def test_resnet_running_stats_update_in_train_mode_only():
    model = _resnet()

    def stats():
        return jax.tree.leaves(nnx.state(model, nnx.BatchStat))

    before = stats()
    model.train()
    model(IMAGES)
    after_train = stats()
    assert all(not np.allclose(b, a) for b, a in zip(before, after_train, strict=True))

    model.eval()
    first = model(IMAGES)
    for a, b in zip(after_train, stats(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first, model(IMAGES))


def test_resnet_flat_rows_and_images_agree():
    flat = _resnet()
    image = ResNet(n_outputs=4, input_shape=(8, 8, 1), channels=(4, 8), rngs=nnx.Rngs(1))
    nnx.update(image, nnx.state(flat))  # same params and stats
    for model in (flat, image):
        model.eval()
    np.testing.assert_allclose(flat(IMAGES), image(IMAGES.reshape(-1, 8, 8, 1)), atol=1e-6)
    # The image-shaped model given flat rows (and vice versa) reshapes them the same way.
    np.testing.assert_allclose(image(IMAGES), flat(IMAGES.reshape(-1, 8, 8, 1)), atol=1e-6)


def test_resnet_adam_learns_brightest_quadrant():
    # Label = brightest of the four 4x4 quadrants of an 8x8 image: learnable by the conv net.
    x = jax.random.normal(jax.random.key(5), (32, 8, 8, 1), jnp.float32)
    quadrants = x.reshape(32, 2, 4, 2, 4).mean(axis=(2, 4)).reshape(32, 4)
    batch = (x.reshape(32, 64), jnp.argmax(quadrants, axis=-1))

    def loss_fn(model, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

    model = _resnet()
    model.train()
    assert _trained_loss_ratio(model, loss_fn, batch, steps=30, lr=1e-2) < 0.5


@pytest.mark.parametrize(
    ("overrides", "argument"),
    [
        ({"image_shape": None}, "input_shape"),  # flat rows, no image shape
        ({"input_shape": (65,)}, "input_shape"),  # sizes disagree
        ({"input_shape": (8, 8, 3)}, "input_shape"),
        ({"image_shape": (8, 8)}, "image_shape"),
        ({"image_shape": (8, 0, 1)}, "image_shape"),
        ({"channels": ()}, "channels"),
        ({"channels": (4, 0)}, "channels"),
        ({"n_outputs": 0}, "n_outputs"),
        ({"blocks_per_stage": 0}, "blocks_per_stage"),
    ],
)
def test_resnet_bad_arguments(overrides, argument):
    with pytest.raises(ValueError, match=argument):
        nnx.eval_shape(lambda: _resnet(**overrides))
