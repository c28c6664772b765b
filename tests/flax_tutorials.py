"""Models written the way Flax's own NNX docs write them (flax 0.12, docs_nnx/), only smaller.

- `CNN`: the MNIST tutorial's (docs_nnx/mnist_tutorial.md): ``nnx.Dropout(rate)`` built
  without rngs, keys at call time ``__call__(self, x, rngs: nnx.Rngs | None = None)``, BatchNorm;
  the flattened width hard-coded as the tutorial does (8x8 digits, two 2x2 pools: 2*2*16).
- `MiniGPT`: the MiniGPT example's (docs_nnx/examples/minigpt.md): parameters annotated with
  ``kernel_metadata={'out_sharding': P(None, 'model')}`` and ``nnx.with_partitioning``, the
  embedding and the output resharded to the input's sharding, dropout keys held by the module.
- `VisionTransformer`: the ViT example's (docs_nnx/examples/vit_training.md): a frozen
  ``ModelConfig`` dataclass with a nested ``ShardingConfig``, call-time rngs passed through
  ``nnx.Sequential`` and ``nnx.MultiHeadAttention(keep_rngs=False)``.
- `Flagged`: a model that asks for ``train`` and ``deterministic`` at call time.
- `TwoHeads`: returns a tuple (logits, features): fine for the user's own loss, refused with a
  built-in one.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

CNN = textwrap.dedent(
    """
    from functools import partial

    from flax import nnx


    class CNN(nnx.Module):
      '''A simple CNN model.'''

      def __init__(self, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 8, kernel_size=(3, 3), rngs=rngs)
        self.batch_norm1 = nnx.BatchNorm(8, rngs=rngs)
        self.dropout1 = nnx.Dropout(rate=0.025)
        self.conv2 = nnx.Conv(8, 16, kernel_size=(3, 3), rngs=rngs)
        self.batch_norm2 = nnx.BatchNorm(16, rngs=rngs)
        self.avg_pool = partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
        self.linear1 = nnx.Linear(64, 32, rngs=rngs)
        self.dropout2 = nnx.Dropout(rate=0.5)
        self.linear2 = nnx.Linear(32, 10, rngs=rngs)

      def __call__(self, x, rngs: nnx.Rngs | None = None):
        x = self.avg_pool(nnx.relu(self.batch_norm1(self.dropout1(self.conv1(x), rngs=rngs))))
        x = self.avg_pool(nnx.relu(self.batch_norm2(self.conv2(x))))
        x = x.reshape(x.shape[0], -1)  # flatten
        x = nnx.relu(self.dropout2(self.linear1(x), rngs=rngs))
        x = self.linear2(x)
        return x


    class Flagged(nnx.Module):
      '''Asks for its mode at call time instead of model.train() / model.eval().'''

      def __init__(self, n_features: int, n_outputs: int, *, rngs: nnx.Rngs):
        self.a = nnx.Linear(n_features, 32, rngs=rngs)
        self.drop = nnx.Dropout(0.5)
        self.b = nnx.Linear(32, n_outputs, rngs=rngs)

      def __call__(self, x, *, train: bool, deterministic: bool, rngs: nnx.Rngs | None = None):
        assert train is not deterministic
        x = x.reshape(x.shape[0], -1)
        return self.b(self.drop(nnx.relu(self.a(x)), deterministic=deterministic, rngs=rngs))


    class TwoHeads(nnx.Module):
      def __init__(self, n_features: int, n_outputs: int, *, rngs: nnx.Rngs):
        self.a = nnx.Linear(n_features, n_outputs, rngs=rngs)

      def __call__(self, x):
        h = x.reshape(x.shape[0], -1)
        return self.a(h), h
    """
)

MINIGPT = textwrap.dedent(
    """
    import jax
    import jax.numpy as jnp
    import flax.nnx as nnx
    from jax.sharding import PartitionSpec as P, reshard


    class TransformerBlock(nnx.Module):
        def __init__(self, embed_dim: int, num_heads: int, ff_dim: int, *, rngs: nnx.Rngs,
                     rate: float = 0.1):
            self.mha = nnx.MultiHeadAttention(num_heads=num_heads,
                  in_features=embed_dim,
                  kernel_metadata={'out_sharding': P(None, 'model')},
                  bias_metadata={'out_sharding': P('model')},
                  rngs=rngs)
            self.dropout1 = nnx.Dropout(rate=rate, rngs=rngs)
            self.layer_norm1 = nnx.LayerNorm(epsilon=1e-6,
                 num_features=embed_dim,
                 scale_metadata={'out_sharding': P('model')},
                 bias_metadata={'out_sharding': P('model')},
                 rngs=rngs)
            self.mlp = nnx.Sequential(
                nnx.Linear(in_features=embed_dim,
                  out_features=ff_dim,
                  kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(),
                                                    (None, 'model')),
                  bias_metadata={'out_sharding': P('model')},
                  rngs=rngs),
                nnx.relu,
                nnx.Linear(in_features=ff_dim,
                  out_features=embed_dim,
                  kernel_metadata={'out_sharding': P(None, 'model')},
                  bias_metadata={'out_sharding': P('model')},
                  rngs=rngs),
                nnx.Dropout(rate=rate, rngs=rngs))
            self.layer_norm2 = nnx.LayerNorm(epsilon=1e-6,
             num_features=embed_dim,
             scale_metadata={'out_sharding': P('model')},
             bias_metadata={'out_sharding': P('model')},
             rngs=rngs)

        def __call__(self, inputs):
            attention_output = self.mha(inputs_q=inputs, is_causal=True, decode=False)
            attention_output = self.dropout1(attention_output)
            out1 = self.layer_norm1(inputs + attention_output)
            ffn_output = self.mlp(out1)
            return self.layer_norm2(out1 + ffn_output)


    class TokenAndPositionEmbedding(nnx.Module):
        def __init__(self, maxlen: int, vocab_size: int, embed_dim: int, *, rngs: nnx.Rngs):
            self.token_emb = nnx.Embed(num_embeddings=vocab_size, features=embed_dim, rngs=rngs)
            self.pos_emb = nnx.Embed(num_embeddings=maxlen, features=embed_dim, rngs=rngs)

        def __call__(self, x):
            positions = jnp.arange(0, x.shape[1])[None, :]
            position_embedding = self.pos_emb(positions)
            token_embedding = self.token_emb(x, out_sharding=jax.typeof(x).sharding)
            return token_embedding + position_embedding


    class MiniGPT(nnx.Module):
        def __init__(self, maxlen: int, vocab_size: int, embed_dim: int, num_heads: int,
                     feed_forward_dim: int, num_transformer_blocks: int, rngs: nnx.Rngs):
            self.embedding_layer = TokenAndPositionEmbedding(
                        maxlen, vocab_size, embed_dim, rngs=rngs
                    )
            self.transformer_blocks = nnx.Sequential(*[TransformerBlock(
                embed_dim, num_heads, feed_forward_dim, rngs=rngs
            ) for _ in range(num_transformer_blocks)])
            self.output_layer = nnx.Linear(in_features=embed_dim,
                                           out_features=vocab_size,
                                           kernel_metadata={'out_sharding': P(None, 'model')},
                                           bias_metadata={'out_sharding': P('model')},
                                           rngs=rngs)

        def __call__(self, inputs):
            x = self.embedding_layer(inputs)
            x = self.transformer_blocks(x)
            return reshard(self.output_layer(x), jax.typeof(inputs).sharding)
    """
)

VIT = textwrap.dedent(
    """
    from dataclasses import dataclass

    import jax
    import jax.numpy as jnp
    from flax import nnx
    from jax.sharding import PartitionSpec as P


    @dataclass(slots=True, frozen=True)
    class ShardingConfig:
        attn_qkvo_weight_ndh: P | None = None
        mlp_weight_df: P | None = None
        mlp_weight_fd: P | None = None
        act_btd: P | None = None
        act_btf: P | None = None
        act_btnh: P | None = None
        act_bc: P | None = None
        fsdp_axis_name: str = "fsdp"

        @staticmethod
        def no_sharding():
            return ShardingConfig()


    @dataclass(slots=True, frozen=True)
    class ModelConfig:
        num_classes: int = 1000
        in_channels: int = 3
        img_size: int = 224
        patch_size: int = 16
        num_layers: int = 12
        num_heads: int = 12
        mlp_dim: int = 3072
        hidden_size: int = 768
        dropout_rate: float = 0.1
        sharding: ShardingConfig = ShardingConfig.no_sharding()
        use_bfloat16: bool = True


    class VisionTransformer(nnx.Module):
        def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
            act_dtype = jnp.bfloat16 if config.use_bfloat16 else jnp.float32
            param_dtype = jnp.float32
            n_patches = (config.img_size // config.patch_size) ** 2
            self.patch_embeddings = nnx.Conv(
                config.in_channels,
                config.hidden_size,
                kernel_size=(config.patch_size, config.patch_size),
                strides=(config.patch_size, config.patch_size),
                padding="VALID",
                use_bias=True,
                dtype=act_dtype,
                param_dtype=param_dtype,
                rngs=rngs,
            )
            initializer = jax.nn.initializers.truncated_normal(stddev=0.02)
            self.position_embeddings = nnx.Param(
                initializer(rngs.params(), (1, n_patches + 1, config.hidden_size), param_dtype)
            )
            self.dropout = nnx.Dropout(config.dropout_rate)
            self.cls_token = nnx.Param(jnp.zeros((1, 1, config.hidden_size), dtype=param_dtype))
            self.encoder = nnx.Sequential(*[
                TransformerEncoder(config, rngs=rngs) for i in range(config.num_layers)
            ])
            self.final_norm = nnx.LayerNorm(
                config.hidden_size, rngs=rngs, dtype=act_dtype, param_dtype=param_dtype
            )
            self.classifier = nnx.Linear(
                config.hidden_size, config.num_classes, rngs=rngs, dtype=act_dtype,
                param_dtype=param_dtype,
            )
            self.config = config

        def embed(self, x: jax.Array) -> jax.Array:
            patches = self.patch_embeddings(x, out_sharding=self.config.sharding.act_btd)
            batch_size = patches.shape[0]
            patches = patches.reshape(batch_size, -1, patches.shape[-1])
            cls_token = jnp.tile(self.cls_token.astype(x.dtype), (batch_size, 1, 1))
            if self.config.sharding.act_btd is not None:
                cls_token = jax.device_put(cls_token, device=self.config.sharding.act_btd)
            x = jnp.concat([cls_token, patches], axis=1)
            return x + self.position_embeddings.astype(x.dtype)

        def __call__(self, x: jax.Array, rngs: nnx.Rngs | None = None) -> jax.Array:
            x = self.embed(x)
            x = self.dropout(x, rngs=rngs)
            x = self.encoder(x, rngs=rngs)
            x = self.final_norm(x)
            x = x[:, 0]
            return self.classifier(x, out_sharding=self.config.sharding.act_bc)


    class TransformerEncoder(nnx.Module):
        def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs) -> None:
            act_dtype = jnp.bfloat16 if config.use_bfloat16 else jnp.float32
            param_dtype = jnp.float32
            self.norm1 = nnx.LayerNorm(
                config.hidden_size, rngs=rngs, dtype=act_dtype, param_dtype=param_dtype
            )
            self.mha = nnx.MultiHeadAttention(
                num_heads=config.num_heads,
                in_features=config.hidden_size,
                dropout_rate=config.dropout_rate,
                broadcast_dropout=False,
                decode=False,
                deterministic=False,
                kernel_metadata={"out_sharding": config.sharding.attn_qkvo_weight_ndh},
                out_kernel_metadata={"out_sharding": config.sharding.attn_qkvo_weight_ndh},
                keep_rngs=False,
                dtype=act_dtype,
                param_dtype=param_dtype,
                rngs=rngs,
            )
            self.norm2 = nnx.LayerNorm(config.hidden_size, rngs=rngs)
            self.mlp_up_proj = nnx.Linear(
                config.hidden_size, config.mlp_dim,
                kernel_metadata={"out_sharding": config.sharding.mlp_weight_df},
                dtype=act_dtype, param_dtype=param_dtype, rngs=rngs,
            )
            self.mlp_down_proj = nnx.Linear(
                config.mlp_dim, config.hidden_size,
                kernel_metadata={"out_sharding": config.sharding.mlp_weight_fd},
                dtype=act_dtype, param_dtype=param_dtype, rngs=rngs,
            )
            self.mlp_drop = nnx.Dropout(config.dropout_rate, rngs=rngs)
            self.config = config

        def attn(self, x: jax.Array, rngs: nnx.Rngs | None = None) -> jax.Array:
            return self.mha(
                x, rngs=rngs, out_sharding=self.config.sharding.act_btd,
                qkv_sharding=self.config.sharding.act_btnh,
            )

        def mlp(self, x: jax.Array, rngs: nnx.Rngs | None = None) -> jax.Array:
            x = self.mlp_up_proj(x, out_sharding=self.config.sharding.act_btf)
            x = nnx.gelu(x)
            x = self.mlp_drop(x, rngs=rngs)
            x = self.mlp_down_proj(x, out_sharding=self.config.sharding.act_btd)
            return self.mlp_drop(x, rngs=rngs)

        def __call__(self, x: jax.Array, rngs: nnx.Rngs | None = None) -> jax.Array:
            x = x + self.attn(self.norm1(x), rngs=rngs)
            x = x + self.mlp(self.norm2(x), rngs=rngs)
            return x
    """
)

# The tiny ViT on 8x8 digits: one encoder layer, two heads; num_classes comes from the data.
VIT_ARGS = {
    "config": {
        "img_size": 8,
        "in_channels": 1,
        "patch_size": 4,
        "num_layers": 1,
        "num_heads": 2,
        "mlp_dim": 16,
        "hidden_size": 8,
        "use_bfloat16": False,
    }
}
MINIGPT_ARGS = {
    "maxlen": 16,
    "embed_dim": 16,
    "num_heads": 2,
    "feed_forward_dim": 32,
    "num_transformer_blocks": 1,
}
CORPUS = "the quick brown fox jumps over the lazy dog. " * 60


def write_tutorials(folder: Path) -> Path:
    """The three files and their data (digits as 8x8x1 images, a tiny text), in `folder`."""
    from sklearn.datasets import load_digits

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cnn.py").write_text(CNN)
    (folder / "minigpt.py").write_text(MINIGPT)
    (folder / "vit.py").write_text(VIT)
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    np.savez(folder / "digits.npz", x=x, y=digits.target)
    (folder / "corpus.txt").write_text(CORPUS)
    return folder
