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
