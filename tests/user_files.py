"""A user's files, as they would sit beside their spec: written into a test's folder."""

from __future__ import annotations

import textwrap
from pathlib import Path

NETS = textwrap.dedent(
    """
    import jax.numpy as jnp
    import optax
    from flax import nnx


    class Net(nnx.Module):
        '''Dense -> BatchNorm -> relu -> dropout -> dense: state and randomness per lane.'''

        def __init__(self, *, n_features, n_outputs, rngs, width=16, rate=0.1):
            self.a = nnx.Linear(n_features, width, rngs=rngs)
            self.bn = nnx.BatchNorm(width, rngs=rngs)
            self.drop = nnx.Dropout(rate, rngs=rngs)
            self.b = nnx.Linear(width, n_outputs, rngs=rngs)

        def __call__(self, x):
            return self.b(self.drop(nnx.relu(self.bn(self.a(x)))))


    class Wrong(nnx.Module):
        '''Two outputs whatever the data: does not fit a 3-class cross entropy.'''

        def __init__(self, *, n_features, rngs):
            self.a = nnx.Linear(n_features, 2, rngs=rngs)

        def __call__(self, x):
            return self.a(x)


    class Raises(nnx.Module):
        def __init__(self, *, n_features, n_outputs, rngs):
            self.a = nnx.Linear(n_features + 1, n_outputs, rngs=rngs)  # the wrong input width

        def __call__(self, x):
            return self.a(x)


    def smoothed_ce(pred, y):
        '''Label-smoothed cross entropy: a loss no built-in has.'''
        labels = optax.smooth_labels(jnp.eye(pred.shape[-1])[y], 0.1)
        return optax.softmax_cross_entropy(pred, labels).mean()


    def per_example(pred, y):
        return optax.softmax_cross_entropy_with_integer_labels(pred, y)  # not a scalar


    def accuracy(pred, y):
        return {"acc": jnp.mean(jnp.argmax(pred, -1) == y)}
    """
)


def write_user_files(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "nets.py").write_text(NETS)
    return folder / "nets.py"
