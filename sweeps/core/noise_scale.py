"""The gradient noise scale B_simple = tr(Σ) / |G|² (McCandlish et al. 2018, appendix A).

Σ is the covariance of one example's gradient, G the full gradient. Training with batches much
smaller than B_simple is noise-dominated (a bigger batch buys a proportionally bigger LR);
much larger, it is curvature-dominated (a bigger batch buys little). Two batch sizes' squared
gradient norms suffice: E|g_B|² = |G|² + tr(Σ)/B, so from a small and a big batch

    |G|² ≈ (B_big |g_big|² − B_small |g_small|²) / (B_big − B_small)
    tr(Σ) ≈ (|g_small|² − |g_big|²) / (1/B_small − 1/B_big)

each averaged over several batches drawn with replacement (so the identity holds exactly,
with no finite-population correction). Measured here at the model's initialisation
(one seed): the scale usually grows as training goes on, so this is where the batch stops
paying *early* in training, a lower bound for later.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sweeps.core.data import Dataset


def b_simple(norms_small: float, norms_big: float, small: int, big: int) -> dict[str, float]:
    """B_simple from the mean squared gradient norms at two batch sizes (appendix A)."""
    g2 = (big * norms_big - small * norms_small) / (big - small)
    trace = (norms_small - norms_big) / (1.0 / small - 1.0 / big)
    return {
        "g2": float(g2),
        "trace": float(trace),
        "b_simple": float(trace / g2) if g2 > 0 else float("inf"),
    }


def gradient_noise_scale(
    structure, data: Dataset, *, small: int, big: int, repeats: int = 16, seed: int = 0
) -> dict[str, float]:
    """B_simple of `structure`'s model and loss on the training rows at initialisation."""
    from sweeps.core.program import get_program

    prog = get_program(structure, data)
    params, state = prog.model.init(jax.random.key(seed))
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)

    @jax.jit
    def norm2(rows):
        def loss(p):
            pred, _ = prog.model.apply(p, state, x[rows], False)
            return prog.loss.fn(pred, y[rows])

        g = jax.grad(loss)(params)
        return sum(jnp.sum(leaf.astype(jnp.float32) ** 2) for leaf in jax.tree.leaves(g))

    rng = np.random.default_rng(seed)
    n = data.n_train
    big = min(big, n)

    def mean_norm(size: int) -> float:
        return float(np.mean([norm2(jnp.asarray(rng.choice(n, size, replace=True)))
                              for _ in range(repeats)]))  # fmt: skip

    return {**b_simple(mean_norm(small), mean_norm(big), small, big), "small": small, "big": big}
