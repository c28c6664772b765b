"""B_simple from two batch sizes against its definition: per-example gradients of every row."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from models import MLPSpec
from sweeps.core.data import load_dataset
from sweeps.core.noise_scale import b_simple, gradient_noise_scale
from sweeps.core.program import Structure, get_program


def test_the_two_batch_estimate_matches_tr_sigma_over_g2_from_every_example():
    data = load_dataset(name="teacher", n_samples=1500)
    structure = Structure(MLPSpec(name="mlp", hidden=[16]), "cross_entropy", "sgd", "constant",
                          32, 10, 10)  # fmt: skip
    prog = get_program(structure, data)
    params, state = prog.model.init(jax.random.key(0))
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)

    def one(xi, yi):
        def loss(p):
            pred, _ = prog.model.apply(p, state, xi[None], False)
            return prog.loss.fn(pred, yi[None])

        g = jax.grad(loss)(params)
        return jnp.concatenate([leaf.ravel() for leaf in jax.tree.leaves(g)])

    per_example = np.asarray(jax.vmap(one)(x, y), np.float64)
    mean = per_example.mean(0)
    truth = ((per_example - mean) ** 2).sum(1).mean() / (mean**2).sum()

    got = gradient_noise_scale(structure, data, small=4, big=256, repeats=200)
    assert 0.7 < got["b_simple"] / truth < 1.4, (got, truth)


def test_the_closed_form_inverts_the_identity():
    g2, trace = 2.0, 50.0
    norms = {b: g2 + trace / b for b in (8, 128)}
    got = b_simple(norms[8], norms[128], 8, 128)
    assert abs(got["b_simple"] - 25.0) < 1e-9


LINEAR = """
from flax import nnx


class Linear(nnx.Module):
    def __init__(self, *, n_features, n_outputs, rngs):
        self.l = nnx.Linear(n_features, n_outputs, rngs=rngs)

    def __call__(self, x):
        return self.l(x)
"""


def _least_squares(n=4000, d=8, noise=0.5, seed=0):
    """y = x·w* + noise with Gaussian x: least squares, where every per-example gradient has
    a closed form."""
    from sweeps.core.data import Dataset

    rng = np.random.default_rng(seed)
    w = rng.normal(size=(d, 1))
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x @ w + noise * rng.normal(size=(n, 1))).astype(np.float32)
    return Dataset("least_squares", "regression", x[:3000], y[:3000], x[3000:], y[3000:], None,
                   tuple(f"x{i}" for i in range(d)), None, None, None, None)  # fmt: skip


def _closed_form(params, data):
    """tr(Σ)/|G|² of the mean squared error of x·W + b over the training rows (the rows the
    estimator draws from, with replacement): the gradient of (x·W + b − y)² is 2r·(x, 1)."""
    kernel = np.asarray(params["l"]["kernel"], np.float64)
    bias = np.asarray(params["l"]["bias"], np.float64)
    x, y = data.x_train.astype(np.float64), data.y_train.astype(np.float64)
    r = x @ kernel + bias - y
    per_example = 2 * r * np.concatenate([x, np.ones((len(x), 1))], axis=1)
    mean = per_example.mean(0)
    return ((per_example - mean) ** 2).sum(1).mean() / (mean**2).sum()


def _plain_optax(model, data, lr, steps, batch, seed):
    """The lane's reference: the same model, init and batches trained by a plain optax loop."""
    import optax

    from sweeps.core.batches import batch_plan

    params, _ = model.init(jax.random.key(seed))
    tx = optax.sgd(lr)
    opt = tx.init(params)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    for rows in batch_plan(data.n_train, batch, steps, 0):

        def loss(p, rows=rows):
            pred, _ = model.apply(p, {}, x[rows], True)
            return jnp.mean((pred - y[rows]) ** 2)

        updates, opt = tx.update(jax.grad(loss)(params), opt, params)
        params = optax.apply_updates(params, updates)
    return params


def test_at_trained_params_the_estimate_matches_least_squares_closed_form(tmp_path):
    from models import ImportModelSpec, imports
    from sweeps.core.noise_scale import noise_scale_in_training, trained_lane

    (tmp_path / "linear.py").write_text(LINEAR)
    spec = ImportModelSpec(import_=imports.canonical("linear.py:Linear", tmp_path))
    data = _least_squares()
    steps, lr = 60, 0.02
    structure = Structure(spec, "mse", "sgd", "constant", 16, steps, 15)
    prog = get_program(structure, data)

    (step, lane), = list(trained_lane(structure, data, learning_rate=lr, optimizer_args={},
                                      schedule_args={}, seed=3, at_steps=[steps]))  # fmt: skip
    reference = _plain_optax(prog.model, data, lr, steps, 16, seed=3)
    for got, want in zip(jax.tree.leaves(lane.params), jax.tree.leaves(reference), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

    at_init = _closed_form(prog.model.init(jax.random.key(3))[0], data)
    truth = _closed_form(lane.params, data)
    assert truth > 3 * at_init  # training moved it: the test tells trained from initial params
    got = noise_scale_in_training(structure, data, learning_rate=lr, optimizer_args={},
                                  schedule_args={}, seed=3, small=4, big=512, repeats=200)  # fmt: skip
    assert got["steps"] == [0, 15, 30, 60] and got["at"] == "best_lr"
    assert 0.75 < got["b_simple"] / truth < 1.33, (got, truth)
    assert 0.75 < got["trajectory"][0]["b_simple"] / at_init < 1.33
