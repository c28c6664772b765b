"""μP for the built-in mlp and transformer (models/mup.py): the multiplier tree against TP V's
table, μP at the base width against SP bit for bit, the trainer against a plain optax loop with
per-layer learning rates, the coordinate check (activations flat across widths under μP, growing
under SP), the refusals, and the spec hash of specs that do not use μP."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import tiny_spec_dict
from typer.testing import CliRunner

from models import MLPSpec, TransformerSpec, make_model, mup
from models.specs import DataShape
from sweeps.core.optimizers import OPTIMIZERS
from sweeps.core.population import train_population
from sweeps.core.program import Structure, make_hyperparams
from sweeps.errors import SpecError
from sweeps.folder import spec_fingerprint
from sweeps.spec import parse_spec

FEATURES, CLASSES = 16, 10
MLP_DATA = DataShape(n_outputs=CLASSES, input_shape=(FEATURES,))
VOCAB, BLOCK = 16, 8
TOKENS = DataShape(n_outputs=VOCAB, input_shape=(BLOCK,), vocab_size=VOCAB)


def _mlp(width: int, parametrization: str = "mup", base: int = 64, depth: int = 3) -> MLPSpec:
    extra = {"parametrization": "mup", "base_width": base} if parametrization == "mup" else {}
    return MLPSpec(name="mlp", hidden=[64] * depth, width=width, **extra)


def _transformer(d_model: int, parametrization: str = "mup", base: int = 32) -> TransformerSpec:
    extra = {"parametrization": "mup", "base_width": base} if parametrization == "mup" else {}
    return TransformerSpec(name="transformer", d_model=d_model, n_layers=2, n_heads=4, **extra)


# -- the table ------------------------------------------------------------------------------


def test_the_mlp_multiplier_tree_is_the_table():
    tree = mup.lr_multipliers(_mlp(256, base=64), MLP_DATA, make_model)
    layers = tree["layers"]
    assert layers[0]["kernel"] == 1.0  # input weights: fan_out is the width, LR unscaled
    assert layers[1]["kernel"] == layers[2]["kernel"] == 64 / 256  # hidden: b/n
    assert layers[3]["kernel"] == 1.0  # readout: its multiplier instead
    assert all(layers[i]["bias"] == 1.0 for i in range(4))
    assert mup.lr_multipliers(_mlp(256, "sp"), MLP_DATA, make_model) is None
    at_base = jax.tree.leaves(mup.lr_multipliers(_mlp(64, base=64), MLP_DATA, make_model))
    assert at_base == [1.0] * 8

    # the forward-pass half: readout multiplier b/n, readout init variance 1/b (SP's is 1/n)
    model = make_model(_mlp(1024, base=64), MLP_DATA)
    readout = np.asarray(model.init(jax.random.key(0))[0]["layers"][3]["kernel"])
    assert readout.var() == pytest.approx(1 / 64, rel=0.1)
    sp = make_model(_mlp(1024, "sp"), MLP_DATA)
    assert np.asarray(sp.init(jax.random.key(0))[0]["layers"][3]["kernel"]).var() == pytest.approx(
        1 / 1024, rel=0.1
    )


def test_the_transformer_multiplier_tree_is_the_table():
    tree = mup.lr_multipliers(_transformer(128, base=32), TOKENS, make_model)
    block = tree["blocks"][0]
    for name in ("qkv", "out"):
        assert block["attn"][name]["kernel"] == 0.25 and block["attn"][name]["bias"] == 1.0
    assert block["mlp_in"]["kernel"] == block["mlp_out"]["kernel"] == 0.25  # d_ff = 4 d_model
    assert block["ln_attn"]["scale"] == block["ln_mlp"]["bias"] == 1.0
    assert tree["token_embed"]["embedding"] == tree["pos_embed"]["embedding"] == 1.0
    assert tree["head"]["kernel"] == tree["head"]["bias"] == tree["ln_final"]["scale"] == 1.0
    assert mup.attention_scale(32, 8) == pytest.approx(np.sqrt(8) / 32)  # 1/d_head, not 1/sqrt
    assert mup.attention_scale(8, 8) == 1 / np.sqrt(8)


def test_the_mlp_width_scales_its_hidden_sizes():
    assert mup.scaled_hidden([32, 16], 128) == [128, 64]
    fns = make_model(MLPSpec(name="mlp", hidden=[32, 16], width=128), MLP_DATA)
    assert fns.param_shapes[:4] == ((128,), (FEATURES, 128), (64,), (128, 64))


# -- μP at the base width is SP ---------------------------------------------------------------


def _adam(lrs):
    n = len(lrs)
    args = {k: np.full(n, v) for k, v in OPTIMIZERS["adam"].defaults.items()}
    return make_hyperparams(lrs, args, {})


def _structure(model, steps=20):
    return Structure(model, "cross_entropy", "adam", "constant", 32, steps, 10)


def test_mup_at_the_base_width_trains_exactly_as_sp(iris):
    def run(model):
        points = list(train_population(_structure(model), iris, _adam([1e-2, 0.1]), [0, 1]))
        return points, jax.tree.leaves(points[-1].state[0].params)

    sp_points, sp_params = run(MLPSpec(name="mlp", hidden=[16, 16]))
    mup_points, mup_params = run(MLPSpec(name="mlp", hidden=[16, 16], width=16,
                                         parametrization="mup", base_width=16))  # fmt: skip
    for a, b in zip(sp_params, mup_params, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(sp_points, mup_points, strict=True):
        np.testing.assert_array_equal(a.val_loss, b.val_loss)

    # the transformer: the same parameters and logits (attention 1/d_head is SP's at the base)
    tokens = jax.random.randint(jax.random.key(1), (4, BLOCK), 0, VOCAB)
    sp, mu = make_model(_transformer(32, "sp"), TOKENS), make_model(_transformer(32), TOKENS)
    for a, b in zip(*(jax.jit(lambda k, m=m: (m.init(k)[0], m.apply(m.init(k)[0], {}, tokens,
                      False)[0]))(jax.random.key(0)) for m in (sp, mu)), strict=True):  # fmt: skip
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


# -- the trainer against a plain optax loop with per-layer LRs --------------------------------


def _forward(params, x, readout_multiplier):
    """The MLP written out in jnp, μP's readout multiplier on the last layer's input."""
    layers = params["layers"]
    h = x.reshape(x.shape[0], -1)
    for i in range(len(layers) - 1):
        h = jax.nn.relu(h @ layers[i]["kernel"] + layers[i]["bias"])
    return (h * readout_multiplier) @ layers[len(layers) - 1]["kernel"] + layers[len(layers) - 1][
        "bias"
    ], h


def test_the_trainer_trains_mup_as_an_optax_loop_with_per_layer_learning_rates(iris):
    from sweeps.core.batches import batch_plan

    width, base, steps, lrs = 128, 32, 30, [3e-3, 3e-2]
    spec = MLPSpec(name="mlp", hidden=[8, 8], width=width, parametrization="mup", base_width=base)
    points = list(train_population(_structure(spec, steps), iris, _adam(lrs), [0, 0]))
    losses = np.concatenate([p.step_losses for p in points[1:]], axis=1)

    shape = DataShape(n_outputs=iris.num_classes, input_shape=iris.input_shape)
    sp = make_model(MLPSpec(name="mlp", hidden=[8, 8], width=width), shape)
    x, y = jnp.asarray(iris.x_train), jnp.asarray(iris.y_train)
    plan = batch_plan(iris.n_train, 32, steps, 0)
    for lane, lr in enumerate(lrs):
        params, _ = sp.init(jax.random.key(0))  # TP V: readout init variance 1/b, not 1/n
        params["layers"][2]["kernel"] = params["layers"][2]["kernel"] * np.sqrt(width / base)
        labels = {"layers": {i: {"kernel": "hidden" if i == 1 else "other", "bias": "other"}
                             for i in range(3)}}  # fmt: skip
        tx = optax.multi_transform(
            {"hidden": optax.adam(lr * base / width), "other": optax.adam(lr)}, labels
        )
        state = tx.init(params)

        @jax.jit
        def step(params, state, rows, tx=tx):
            def loss_fn(p):
                logits, _ = _forward(p, x[rows], base / width)
                return optax.softmax_cross_entropy_with_integer_labels(logits, y[rows]).mean()

            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state, loss

        want = []
        for rows in plan:
            params, state, loss = step(params, state, jnp.asarray(rows))
            want.append(float(loss))
        np.testing.assert_allclose(losses[lane], want, rtol=2e-4, atol=1e-6)
        got = jax.tree.map(lambda a, lane=lane: a[lane], points[-1].state[0].params)
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(params), strict=True):
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=2e-4, atol=5e-5)


# -- the coordinate check ---------------------------------------------------------------------
# Each configuration is one compiled function (init, 4 Adam steps at LR 0.02 on one fixed batch,
# the sizes measured). SP at the base width is μP there (tested above, bit for bit), so SP is
# trained at the widest width only and compared with the base width's μP row.


def _coordinates(spec, data: DataShape, x, y, measure) -> np.ndarray:
    model = make_model(spec, data)
    multipliers = mup.lr_multipliers(spec, data, make_model)
    tx = OPTIMIZERS["adam"].build({"learning_rate": 0.02})

    def loss_fn(p):
        logits = model.apply(p, {}, x, True)[0]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def run(key):
        init, _ = model.init(key)

        def step(carry, _):
            params, state = carry
            updates, state = tx.update(jax.grad(loss_fn)(params), state, params)
            return (
                optax.apply_updates(params, mup.scale_updates(updates, multipliers)),
                state,
            ), None

        (params, _), _ = jax.lax.scan(step, (init, tx.init(init)), None, length=4)
        return measure(model, init, params)

    return np.asarray(run(jax.random.key(0)))


def _rms(a):
    return jnp.sqrt(jnp.mean(jnp.square(a)))


def _mlp_coordinates(width: int, parametrization: str) -> np.ndarray:
    """How far each hidden layer's pre-activations moved from init (RMS of the change: Θ(1) in
    μP; in SP Adam moves every entry of a hidden matrix by ~LR, and the change grows with the
    width), and the logits' RMS."""
    x = jax.random.normal(jax.random.key(1), (64, FEATURES))
    y = jax.random.randint(jax.random.key(2), (64,), 0, CLASSES)
    multiplier = 64 / width if parametrization == "mup" else 1.0

    def measure(model, init, params):
        def hidden(p):  # pre-activations: ReLU's zeros would hide the growth
            layers, h, out = p["layers"], x, []
            for i in range(len(layers) - 1):
                out.append(h @ layers[i]["kernel"] + layers[i]["bias"])
                h = jax.nn.relu(out[-1])
            return out

        moved = [_rms(a - b) for a, b in zip(hidden(params), hidden(init), strict=True)]
        readout = params["layers"][len(params["layers"]) - 1]
        written = (jax.nn.relu(hidden(params)[-1]) * multiplier) @ readout["kernel"]
        logits = model.apply(params, {}, x, False)[0]
        # the module's logits are the written-out μP readout (a check of the multiplier)
        agree = jnp.max(jnp.abs(written + readout["bias"] - logits)) < 1e-3 * (1 + _rms(logits))
        return jnp.stack([*moved, _rms(logits), agree])

    sizes = _coordinates(_mlp(width, parametrization, base=64), MLP_DATA, x, y, measure)
    assert sizes[-1] == 1.0
    return sizes[:-1]


def test_coordinate_check_mlp_flat_under_mup_growing_under_sp():
    mu = np.array([_mlp_coordinates(w, "mup") for w in (64, 256, 1024)])  # (width, layer)
    sp_wide = _mlp_coordinates(1024, "sp")
    spread_mu = mu.max(axis=0) / mu.min(axis=0)
    growth_sp = sp_wide / mu[0]  # SP at 64 is μP at 64
    assert np.all(spread_mu < 1.6), mu  # every layer within 1.6x over 16x of width
    assert growth_sp[-1] > 4 and growth_sp[1] > 4, (mu, sp_wide)  # logits, a hidden layer grow


def _transformer_coordinates(d_model: int, parametrization: str) -> np.ndarray:
    """Each block's output RMS and the logits' RMS after the 4 Adam steps."""
    from flax import nnx

    from models.registry import lane_rngs, model_factory

    spec = _transformer(d_model, parametrization, base=32)
    tokens = jax.random.randint(jax.random.key(1), (8, BLOCK + 1), 0, VOCAB)
    x, y = tokens[:, :-1], tokens[:, 1:]
    build = model_factory(spec, TOKENS)
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: build(lane_rngs(jax.random.key(0)))))

    def measure(model, init, params):
        module = nnx.merge(graphdef, params)
        h, out = module.token_embed(x) + module.pos_embed(jnp.arange(BLOCK)), []
        for block in module.blocks:
            h = block(h)
            out.append(_rms(h))
        return jnp.stack([*out, _rms(module(x))])

    return _coordinates(spec, TOKENS, x, y, measure)


def test_coordinate_check_transformer_flat_under_mup_growing_under_sp():
    mu = np.array([_transformer_coordinates(w, "mup") for w in (32, 256)])
    sp_wide = _transformer_coordinates(256, "sp")
    spread_mu = mu.max(axis=0) / mu.min(axis=0)
    assert np.all(spread_mu < 1.6), mu
    assert np.all(sp_wide / mu[0] > 2), (mu, sp_wide)  # SP at 32 is μP at 32


# -- refusals and the spec's dump -------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "prodigy",
                                       "dadapt_adamw", "schedule_free_adamw"])  # fmt: skip
def test_mup_is_refused_for_optimizers_whose_rule_is_not_adams(optimizer):
    raw = tiny_spec_dict(model={"name": "mlp", "parametrization": "mup", "base_width": 16})
    raw["search"]["optimizer"] = ["adam", optimizer]
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    (line,) = err.value.errors
    assert line.startswith("model.parametrization: mup") and f"search.optimizer {optimizer}" in line


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ({"name": "cnn", "parametrization": "mup"}, "model.parametrization"),
        ({"name": "resnet", "parametrization": "mup"}, "model.parametrization"),
        ({"name": "linear", "parametrization": "mup"}, "model.parametrization"),
        ({"import": "nets.py:Net", "parametrization": "mup"}, "model.parametrization"),
        ({"name": "mlp", "parametrization": "mup"}, "model.base_width"),
        ({"name": "mlp", "base_width": 16}, "model.base_width"),
        ({"name": "transformer", "parametrization": "mup", "base_width": 32, "d_ff": 64},
         "model.base_width"),
        ({"name": "transformer", "parametrization": "mup", "base_width": 30}, "model.base_width"),
    ],
)  # fmt: skip
def test_mup_is_refused_where_it_has_no_meaning_naming_the_field(model, field):
    raw = tiny_spec_dict(model=model)
    raw["search"]["optimizer"] = ["adam"]
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    assert any(line.startswith(field + ":") for line in err.value.errors), err.value.errors


def test_the_cli_refuses_mup_with_sgd_with_exit_2(tmp_path):
    import yaml

    from sweeps.cli import app

    raw = tiny_spec_dict(model={"name": "mlp", "parametrization": "mup", "base_width": 16})
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "spec.yaml")])
    assert result.exit_code == 2 and "model.parametrization" in result.output


# Fingerprints (sweeps/folder.py) of these specs as branch `split` dumped them, before μP's
# fields: a folder made then must still be its spec's own (resume, the service's idempotency).
BEFORE_MUP = [
    ({"name": "mlp", "hidden": [16]}, "0dc393023519b7d9"),
    ({"name": "transformer", "d_model": 32}, "d3138f595833aa93"),
    ({"name": "cnn"}, "2344353948249793"),
    ({"import": "nets.py:Net", "args": {"width": 3}}, "921bc373637e7cea"),
]


@pytest.mark.parametrize(("model", "fingerprint"), BEFORE_MUP)
def test_a_spec_without_mup_dumps_and_hashes_as_before(model, fingerprint):
    spec = parse_spec(tiny_spec_dict(model=model))
    dumped = spec.model_dump(mode="json")["model"]
    assert not {"parametrization", "base_width", "width"} & set(dumped)
    assert spec_fingerprint(spec.model_dump_json(indent=1)) == fingerprint
    raw = tiny_spec_dict(model={"name": "mlp", "parametrization": "mup", "base_width": 16})
    raw["search"]["optimizer"] = ["adam"]
    mu = parse_spec(raw)
    assert mu.model.model_dump(mode="json")["base_width"] == 16
    assert parse_spec(mu.model_dump(mode="json")) == mu  # the dump reads back


def test_transfer_width_sweeps_the_mlp_width_under_mup():
    raw = tiny_spec_dict(
        model={"name": "mlp", "hidden": [16, 16], "parametrization": "mup", "base_width": 16},
        transfer={"width": {"arg": "width", "values": [16, 32], "target": 64}},
    )
    raw["search"]["optimizer"] = ["adam"]
    spec = parse_spec(raw)
    assert [spec.transfer.model_at(spec.model, w).width for w in (16, 32)] == [16, 32]
    assert spec.transfer.model_at(spec.model, 32).base_width == 16
