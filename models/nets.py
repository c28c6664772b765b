"""Flax NNX modules behind the built-in model names (the registry's contract: keyword
arguments from the spec and the data, ``rngs`` last).

Inputs of any shape are accepted: dense models flatten one example to a row, the CNN reshapes
a flat row to its image (sklearn's digits arrive as 64 features with an 8x8 image shape).
"""

from collections.abc import Callable, Sequence

import jax
from flax import nnx

from models import mup

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nnx.relu,
    "gelu": nnx.gelu,
    "tanh": nnx.tanh,
    "sigmoid": nnx.sigmoid,
    "silu": nnx.silu,
    "elu": nnx.elu,
}


def _flat(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1)


class Linear(nnx.Module):
    """``x @ W + b`` with ``W`` of shape (in, out)."""

    def __init__(self, *, n_features: int, n_outputs: int, rngs: nnx.Rngs) -> None:
        self.dense = nnx.Linear(n_features, n_outputs, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.dense(_flat(x))


def _dense_stack(sizes: Sequence[int], rngs: nnx.Rngs) -> nnx.List:
    """Dense layers mapping sizes[0] -> sizes[1] -> ... -> sizes[-1]."""
    return nnx.List(
        nnx.Linear(d_in, d_out, rngs=rngs)
        for d_in, d_out in zip(sizes[:-1], sizes[1:], strict=True)
    )


class MLP(nnx.Module):
    """Hidden dense layers (each optionally normalised, then activated, then dropped out),
    followed by a linear output layer.

    ``width`` scales the hidden sizes (the widest becomes ``width``); under
    ``parametrization="mup"`` the readout's input is multiplied by b/n and its init variance is
    1/b (b: its fan-in at ``base_width``, n: its fan-in here; models/mup.py)."""

    def __init__(
        self,
        *,
        n_features: int,
        n_outputs: int,
        hidden: Sequence[int],
        activation: str = "relu",
        norm: str = "none",
        dropout: float = 0.0,
        width: int | None = None,
        parametrization: str = "sp",
        base_width: int | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        base_hidden = mup.scaled_hidden(hidden, base_width) if base_width else None
        if width is not None:
            hidden = mup.scaled_hidden(hidden, width)
        self.layers = _dense_stack([n_features, *hidden, n_outputs], rngs)
        self.readout_multiplier = None  # SP: the readout as it is
        if parametrization == "mup":
            fan_in, base_fan_in = hidden[-1], base_hidden[-1]
            self.readout_multiplier = mup.readout_multiplier(fan_in, base_fan_in)
            readout = self.layers[-1].kernel
            readout[...] = readout[...] * mup.readout_init_scale(fan_in, base_fan_in)
        self.activation = ACTIVATIONS[activation]
        norms = {"batch": nnx.BatchNorm, "layer": nnx.LayerNorm}
        self.norms = nnx.List(norms[norm](h, rngs=rngs) for h in hidden) if norm != "none" else None
        # No Dropout layer at rate 0: the model then carries no RNG state at all.
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0 else None

    def __call__(self, x: jax.Array) -> jax.Array:
        x = _flat(x)
        for i, layer in enumerate(self.layers[:-1]):
            x = layer(x)
            if self.norms is not None:
                x = self.norms[i](x)
            x = self.activation(x)
            if self.dropout is not None:
                x = self.dropout(x)
        if self.readout_multiplier is not None:
            x = x * self.readout_multiplier
        return self.layers[-1](x)


class CNN(nnx.Module):
    """Conv blocks (SAME conv + activation + 2x2 avg pool) -> flatten -> MLP head."""

    def __init__(
        self,
        *,
        n_outputs: int,
        input_shape: tuple[int, ...],
        image_shape: tuple[int, int, int] | None = None,
        channels: Sequence[int] = (16, 32),
        kernel_size: int = 3,
        hidden: Sequence[int] = (64,),
        activation: str = "relu",
        rngs: nnx.Rngs,
    ) -> None:
        image = _image_shape(input_shape, image_shape, "cnn")
        height, width, in_channels = image
        self.image_shape = image
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
        x = _flat(x)
        for layer in self.head[:-1]:
            x = self.activation(layer(x))
        return self.head[-1](x)


def _image_shape(
    input_shape: tuple[int, ...], image_shape: tuple[int, ...] | None, model: str
) -> tuple[int, int, int]:
    """(H, W, C) from the data: inputs that are images already, or flat rows with a shape."""
    input_shape = tuple(input_shape)
    if image_shape is None and len(input_shape) in (2, 3):
        image_shape = input_shape if len(input_shape) == 3 else (*input_shape, 1)
    if image_shape is None:
        raise ValueError(
            f"model.name: {model} needs image-shaped inputs (e.g. digits 8x8, or an .npz of "
            f"(N, H, W, C) images); this dataset's examples have shape {input_shape}"
        )
    image = tuple(int(d) for d in image_shape)
    if len(image) == 2:
        image = (*image, 1)
    if len(image) != 3 or image[0] * image[1] * image[2] != _size(input_shape):
        raise ValueError(
            f"model.name: {model} image_shape {image} has {_size(image)} values but the "
            f"dataset's examples have {_size(input_shape)}"
        )
    return image  # type: ignore[return-value]


def _size(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
