"""Flax NNX modules behind the model registry.

All modules hold only ``nnx.Param`` state (no RNG streams, no batch stats), so
their state can be treated as a plain trainable pytree by ``registry``.
"""

from collections.abc import Callable, Sequence

import jax
from flax import nnx

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nnx.relu,
    "gelu": nnx.gelu,
    "tanh": nnx.tanh,
    "sigmoid": nnx.sigmoid,
    "silu": nnx.silu,
    "elu": nnx.elu,
}


class Linear(nnx.Module):
    """``x @ W + b`` with ``W`` of shape (in, out)."""

    def __init__(self, n_features: int, n_outputs: int, *, rngs: nnx.Rngs) -> None:
        self.dense = nnx.Linear(n_features, n_outputs, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.dense(x)


def _dense_stack(sizes: Sequence[int], rngs: nnx.Rngs) -> nnx.List:
    """Dense layers mapping sizes[0] -> sizes[1] -> ... -> sizes[-1]."""
    return nnx.List(
        nnx.Linear(d_in, d_out, rngs=rngs)
        for d_in, d_out in zip(sizes[:-1], sizes[1:], strict=True)
    )


class MLP(nnx.Module):
    """Hidden dense layers with an activation, followed by a linear output layer."""

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        hidden: Sequence[int],
        activation: str,
        *,
        rngs: nnx.Rngs,
    ) -> None:
        self.layers = _dense_stack([n_features, *hidden, n_outputs], rngs)
        self.activation = ACTIVATIONS[activation]

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.layers[-1](x)


class CNN(nnx.Module):
    """Conv blocks (SAME conv + activation + 2x2 avg pool) -> flatten -> MLP head.

    Inputs arrive as flat rows (B, H*W*C) and are reshaped to NHWC here, so the
    trainer can treat every dataset as a (B, n_features) matrix.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        n_outputs: int,
        channels: Sequence[int],
        kernel_size: int,
        hidden: Sequence[int],
        activation: str,
        *,
        rngs: nnx.Rngs,
    ) -> None:
        height, width, in_channels = image_shape
        self.image_shape = tuple(image_shape)
        self.activation = ACTIVATIONS[activation]
        self.convs = nnx.List(
            nnx.Conv(c_in, c_out, (kernel_size, kernel_size), padding="SAME", rngs=rngs)
            for c_in, c_out in zip([in_channels, *channels[:-1]], channels, strict=True)
        )
        # Pool only while both spatial dims are >= 2, so small images never
        # collapse to zero size. Decided here (statically) to size the head.
        pools = []
        for _ in channels:
            pool = height >= 2 and width >= 2
            if pool:
                height, width = height // 2, width // 2
            pools.append(pool)
        self.pools = tuple(pools)
        self.head = _dense_stack([height * width * channels[-1], *hidden, n_outputs], rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape(x.shape[0], *self.image_shape)
        for conv, pool in zip(self.convs, self.pools, strict=True):
            x = self.activation(conv(x))
            if pool:
                x = nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        for layer in self.head[:-1]:
            x = self.activation(layer(x))
        return self.head[-1](x)
