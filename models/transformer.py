"""A small decoder-only transformer (nanoGPT style) for character/token language modelling.

Tokens (B, T) -> logits (B, T, n_outputs): logits at position t are a prediction of
token t + 1 and depend only on tokens 0..t (causal self-attention).

State: only ``nnx.Param``, plus one RNG stream per ``nnx.Dropout`` when ``dropout > 0``.
With ``dropout == 0`` no Dropout layers are built at all, so the model carries no RNG
state and its whole state is a plain trainable pytree.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
from flax import nnx

from models import mup

# nanoGPT/GPT-2 initialise embeddings with std 0.02; Flax's default (variance scaling
# over the vocabulary) gives much larger token vectors than the position vectors.
_EMBED_INIT = nnx.initializers.normal(stddev=0.02)


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class CausalSelfAttention(nnx.Module):
    """Multi-head self-attention in which position t attends to positions <= t only.

    Written out with einsum rather than ``nnx.MultiHeadAttention``: that module is built
    for autoregressive decoding too (``decode``, ``nnx.Cache`` variables) and needs its
    ``decode``/``deterministic`` flags set; none of that is needed to train a model.
    """

    def __init__(
        self, d_model: int, n_heads: int, *, rngs: nnx.Rngs, base_head_dim: int | None = None
    ) -> None:
        self.n_heads = n_heads
        # μP (models/mup.py): logits scaled 1/d_head, equal to SP's at the base head size
        self.base_head_dim = base_head_dim
        # One projection for queries, keys and values: one matmul instead of three.
        self.qkv = nnx.Linear(d_model, 3 * d_model, rngs=rngs)
        self.out = nnx.Linear(d_model, d_model, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        batch, length, d_model = x.shape
        head_dim = d_model // self.n_heads
        q, k, v = jnp.split(self.qkv(x), 3, axis=-1)
        q, k, v = (a.reshape(batch, length, self.n_heads, head_dim) for a in (q, k, v))
        # Scores (B, H, T_query, T_key), scaled so their variance does not grow with head_dim.
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k)
        if self.base_head_dim is None:
            scores = scores / math.sqrt(head_dim)
        else:  # 1/sqrt(b) * (b/d): the division SP does, then exactly 1.0 at the base width
            b = self.base_head_dim
            scores = scores / math.sqrt(b) * (b / head_dim)
        # Causal mask: query t sees keys 0..t. Every row keeps its diagonal, so no row is
        # all-masked and a large finite negative (not -inf) is safe in softmax and its grad.
        causal = jnp.tril(jnp.ones((length, length), dtype=bool))
        scores = jnp.where(causal, scores, jnp.finfo(scores.dtype).min)
        weights = jax.nn.softmax(scores, axis=-1)
        y = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(batch, length, d_model)
        return self.out(y)


class Block(nnx.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float,
        *,
        rngs: nnx.Rngs,
        dropout_rngs: nnx.Rngs | None,
        base_head_dim: int | None = None,
    ) -> None:
        self.ln_attn = nnx.LayerNorm(d_model, rngs=rngs)
        self.attn = CausalSelfAttention(d_model, n_heads, rngs=rngs, base_head_dim=base_head_dim)
        self.ln_mlp = nnx.LayerNorm(d_model, rngs=rngs)
        self.mlp_in = nnx.Linear(d_model, d_ff, rngs=rngs)
        self.mlp_out = nnx.Linear(d_ff, d_model, rngs=rngs)
        # Dropout on each residual branch, as in GPT-2. Absent (None) when the rate is 0,
        # so a dropout-free model holds no RNG state.
        if dropout > 0.0:
            self.attn_drop = nnx.Dropout(dropout, rngs=dropout_rngs)
            self.mlp_drop = nnx.Dropout(dropout, rngs=dropout_rngs)
        else:
            self.attn_drop = self.mlp_drop = None

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.attn(self.ln_attn(x))
        if self.attn_drop is not None:
            h = self.attn_drop(h)
        x = x + h
        h = self.mlp_out(nnx.gelu(self.mlp_in(self.ln_mlp(x))))
        if self.mlp_drop is not None:
            h = self.mlp_drop(h)
        return x + h


class Transformer(nnx.Module):
    """Token + learned position embeddings -> pre-LN blocks -> final LayerNorm -> linear head.

    ``input_shape`` is one example's shape ``(T,)``: T is the block size (the longest
    sequence), which sizes the position embedding. Inputs shorter than T are accepted.

    ``d_model`` is the width. Under ``parametrization="mup"`` (models/mup.py) attention logits
    are scaled 1/d_head and the head's input by base_width/d_model, its init variance
    1/base_width: all exactly as in SP at ``d_model == base_width``.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        n_outputs: int,
        input_shape: tuple[int, ...],
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        d_ff: int | None = None,
        dropout: float = 0.0,
        parametrization: str = "sp",
        base_width: int | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        input_shape = tuple(input_shape)
        if len(input_shape) != 1:
            raise ValueError(
                f"input_shape must be (T,), one example's sequence length, got {input_shape}"
            )
        for name, value in [
            ("vocab_size", vocab_size),
            ("n_outputs", n_outputs),
            ("input_shape[0]", input_shape[0]),
            ("d_model", d_model),
            ("n_layers", n_layers),
            ("n_heads", n_heads),
        ]:
            _check_positive(name, value)
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if d_ff is None:
            d_ff = 4 * d_model  # the usual GPT width of the MLP
        _check_positive("d_ff", d_ff)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")

        # Draw the dropout seed first, whatever the rate, so a given seed gives the same
        # parameters with and without dropout: nnx.Dropout forks its stream from `rngs`,
        # which (with a single default stream) would shift every later initialisation.
        has_dropout_stream = "dropout" in rngs or "default" in rngs
        if dropout > 0.0 and not has_dropout_stream:
            raise ValueError(
                f"dropout ({dropout}) > 0 needs a 'dropout' or 'default' stream in rngs"
            )
        dropout_rngs = None
        if has_dropout_stream:
            dropout_key = rngs.dropout()
            if dropout > 0.0:
                dropout_rngs = nnx.Rngs(dropout=dropout_key)

        is_mup = parametrization == "mup"
        if is_mup and (base_width is None or base_width % n_heads):
            raise ValueError(f"base_width ({base_width}) must be a multiple of n_heads ({n_heads})")
        base_head_dim = base_width // n_heads if is_mup else None

        self.block_size = input_shape[0]
        self.token_embed = nnx.Embed(vocab_size, d_model, embedding_init=_EMBED_INIT, rngs=rngs)
        self.pos_embed = nnx.Embed(self.block_size, d_model, embedding_init=_EMBED_INIT, rngs=rngs)
        self.blocks = nnx.List(
            Block(
                d_model, n_heads, d_ff, dropout, rngs=rngs, dropout_rngs=dropout_rngs,
                base_head_dim=base_head_dim,
            )
            for _ in range(n_layers)
        )  # fmt: skip
        self.ln_final = nnx.LayerNorm(d_model, rngs=rngs)
        self.head = nnx.Linear(d_model, n_outputs, rngs=rngs)
        self.readout_multiplier = None  # SP: the head as it is
        if is_mup:
            self.readout_multiplier = mup.readout_multiplier(d_model, base_width)
            kernel = self.head.kernel
            kernel[...] = kernel[...] * mup.readout_init_scale(d_model, base_width)

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 2:
            raise ValueError(f"expected int tokens of shape (B, T), got shape {x.shape}")
        length = x.shape[1]
        if length > self.block_size:
            raise ValueError(
                f"sequence length {length} exceeds the block size {self.block_size} "
                "(input_shape[0])"
            )
        h = self.token_embed(x) + self.pos_embed(jnp.arange(length))
        for block in self.blocks:
            h = block(h)
        h = self.ln_final(h)
        if self.readout_multiplier is not None:
            h = h * self.readout_multiplier
        return self.head(h).astype(jnp.float32)
