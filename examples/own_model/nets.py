"""A model of your own, beside the spec that names it (`model: {import: "nets.py:WideAndDeep"}`).

Goldilocks builds it as `WideAndDeep(**args, n_features=..., n_outputs=..., rngs=...)`: the
data fills in the arguments the signature asks for. BatchNorm statistics and dropout keys are
per lane; training steps run in `model.train()` mode, evaluation in `model.eval()`.
"""

import jax.numpy as jnp
import optax
from flax import nnx


class WideAndDeep(nnx.Module):
    """A linear ("wide") path plus a deep path with BatchNorm and dropout, summed."""

    def __init__(self, *, n_features: int, n_outputs: int, rngs: nnx.Rngs, width: int = 64,
                 dropout: float = 0.1):  # fmt: skip
        self.wide = nnx.Linear(n_features, n_outputs, rngs=rngs)
        self.hidden = nnx.Linear(n_features, width, rngs=rngs)
        self.norm = nnx.BatchNorm(width, rngs=rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs)
        self.out = nnx.Linear(width, n_outputs, rngs=rngs)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        deep = self.out(self.drop(nnx.relu(self.norm(self.hidden(x)))))
        return self.wide(x) + deep


def focal_loss(logits: jnp.ndarray, labels: jnp.ndarray, gamma: float = 2.0) -> jnp.ndarray:
    """Focal loss (Lin et al. 2017): down-weights the examples already classified well."""
    log_p = jnp.take_along_axis(nnx.log_softmax(logits), labels[:, None], axis=-1)[:, 0]
    return jnp.mean(-((1 - jnp.exp(log_p)) ** gamma) * log_p)


def metrics(logits: jnp.ndarray, labels: jnp.ndarray) -> dict[str, jnp.ndarray]:
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return {"accuracy": jnp.mean(jnp.argmax(logits, -1) == labels), "cross_entropy": ce}
