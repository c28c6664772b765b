"""A small ResNet with BatchNorm for image classification.

State: ``nnx.Param`` and ``nnx.BatchStat`` (the BatchNorm running mean/var). Per NNX
convention, after ``model.train()`` BatchNorm normalises with the batch statistics and
updates its running averages in place; after ``model.eval()`` it uses the running averages.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import jax
from flax import nnx

# He initialisation suits ReLU networks (Flax's default, LeCun, halves the signal per layer).
_CONV_INIT = nnx.initializers.kaiming_normal()
# Short sweeps run a few hundred steps: momentum 0.9 (PyTorch's default) lets the running
# stats catch up; Flax's default 0.99 would leave them far behind the weights.
_BN_MOMENTUM = 0.9


def _conv(c_in: int, c_out: int, kernel: int, strides, *, rngs: nnx.Rngs) -> nnx.Conv:
    # No bias: the BatchNorm that follows every conv has its own shift.
    return nnx.Conv(
        c_in,
        c_out,
        (kernel, kernel),
        strides=strides,
        padding="SAME",
        use_bias=False,
        kernel_init=_CONV_INIT,
        rngs=rngs,
    )


def _batch_norm(features: int, *, rngs: nnx.Rngs) -> nnx.BatchNorm:
    return nnx.BatchNorm(features, momentum=_BN_MOMENTUM, rngs=rngs)


class BasicBlock(nnx.Module):
    """relu(BN(conv(relu(BN(conv(x))))) + skip(x)), as in ResNet-18/34."""

    def __init__(self, c_in: int, c_out: int, strides: tuple[int, int], *, rngs: nnx.Rngs) -> None:
        self.conv1 = _conv(c_in, c_out, 3, strides, rngs=rngs)
        self.bn1 = _batch_norm(c_out, rngs=rngs)
        self.conv2 = _conv(c_out, c_out, 3, 1, rngs=rngs)
        self.bn2 = _batch_norm(c_out, rngs=rngs)
        # The skip must match the residual's shape: a strided 1x1 conv (+ BN) when the
        # channels or the spatial size change, the identity otherwise.
        if c_in != c_out or strides != (1, 1):
            self.proj = _conv(c_in, c_out, 1, strides, rngs=rngs)
            self.proj_bn = _batch_norm(c_out, rngs=rngs)
        else:
            self.proj = self.proj_bn = None

    def __call__(self, x: jax.Array) -> jax.Array:
        h = nnx.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        skip = x if self.proj is None else self.proj_bn(self.proj(x))
        return nnx.relu(h + skip)


def _resolve_image_shape(
    input_shape: tuple[int, ...], image_shape: tuple[int, int, int] | None
) -> tuple[int, int, int]:
    """The (H, W, C) image behind one example of shape ``input_shape``."""
    input_shape = tuple(input_shape)
    if image_shape is None:
        if len(input_shape) != 3:
            raise ValueError(
                f"input_shape {input_shape} is not an image (H, W, C); for flat rows "
                "pass image_shape=(H, W, C)"
            )
        image_shape = input_shape
    image_shape = tuple(image_shape)
    if len(image_shape) != 3 or any(
        isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1 for d in image_shape
    ):
        raise ValueError(f"image_shape must be three positive ints (H, W, C), got {image_shape}")
    height, width, channels = image_shape
    flat = (height * width * channels,)
    if input_shape not in (flat, image_shape):
        raise ValueError(
            f"input_shape {input_shape} does not match image_shape {image_shape}: "
            f"expected {flat} (flat rows) or {image_shape}"
        )
    return image_shape


class ResNet(nnx.Module):
    """3x3 stem conv -> stages of basic blocks -> global average pool -> linear head.

    Inputs may be flat rows (B, H*W*C), reshaped here using ``image_shape``, so the trainer
    can treat every dataset as a (B, n_features) matrix; or images (B, H, W, C).
    """

    def __init__(
        self,
        *,
        n_outputs: int,
        input_shape: tuple[int, ...],
        image_shape: tuple[int, int, int] | None = None,
        channels: Sequence[int] = (16, 32),
        blocks_per_stage: int = 1,
        rngs: nnx.Rngs,
    ) -> None:
        self.image_shape = _resolve_image_shape(input_shape, image_shape)
        channels = tuple(channels)
        if not channels or any(
            isinstance(c, bool) or not isinstance(c, numbers.Integral) or c < 1 for c in channels
        ):
            raise ValueError(f"channels must be a non-empty list of positive ints, got {channels}")
        for name, value in [("n_outputs", n_outputs), ("blocks_per_stage", blocks_per_stage)]:
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

        height, width, in_channels = self.image_shape
        self.stem = _conv(in_channels, channels[0], 3, 1, rngs=rngs)
        self.stem_bn = _batch_norm(channels[0], rngs=rngs)
        blocks = []
        c_in = channels[0]
        for stage, c_out in enumerate(channels):
            # Halve each spatial axis at the start of every stage after the first, but only
            # while that axis is >= 2, so small images (8x8 digits) never collapse to 0.
            strides = (1, 1)
            if stage > 0:
                strides = (2 if height >= 2 else 1, 2 if width >= 2 else 1)
                height, width = -(-height // strides[0]), -(-width // strides[1])  # SAME: ceil
            for i in range(blocks_per_stage):
                blocks.append(BasicBlock(c_in, c_out, strides if i == 0 else (1, 1), rngs=rngs))
                c_in = c_out
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(channels[-1], n_outputs, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape(x.shape[0], *self.image_shape)
        x = nnx.relu(self.stem_bn(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(axis=(1, 2)))
