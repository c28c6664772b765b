"""Carried model state in the population trainer, against plain NNX + optax references.

A lane's model carries more than its parameters: BatchNorm's running statistics and the RNG
streams of its Dropout layers (models/registry.py). Each lane here is retrained alone by an
ordinary Flax NNX loop (the module built directly with `lane_rngs(key(seed))`, `model.train()`,
`nnx.Optimizer`, the same minibatches from `batch_plan`), then `model.eval()` on the validation
set; the population must agree lane by lane: every step's loss, the validation loss, the
parameters, BatchNorm's running statistics and the dropout streams.

Tolerances. The reference runs one lane unbatched, step by step; the population runs the
same maths under `vmap` (the first layer one wide matmul over the lanes) inside `scan`, so
XLA fuses and orders float32 reductions differently. The initial state is bit-identical; after
training, measured worst differences (2 cores, x86) were:

- MLP + BatchNorm + dropout, momentum SGD, 24 steps: step losses 2.2e-7 relative, validation
  loss 1e-7, parameters and running statistics 5e-7 absolute (values ~1);
- transformer + dropout, Adam, 20 steps: step losses 1e-6 relative, validation loss 1.1e-6,
  parameters 5.7e-6 absolute at lr 1e-2 (lr / 1700: Adam divides each gradient by its own
  size, so components whose gradient is ~eps carry the rounding difference into the step).

The tolerances below leave about 10x over these. A wrong dropout key, a missed statistics
update or a skipped step moves the numbers by 1e-3 and more (asserted below).

Two places where any two float32 programs legitimately disagree by whole steps are kept out of
the comparison, with the reason at each: Adam behind BatchNorm (the MLP uses momentum SGD
instead) and the transformer's key-projection bias.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from models import MLPSpec, TransformerSpec, nets
from models.registry import lane_rngs
from models.transformer import Transformer
from sweeps.core.batches import batch_plan
from sweeps.core.data import load_dataset
from sweeps.core.optimizers import OPTIMIZERS
from sweeps.core.population import Timing, train_population
from sweeps.core.program import Structure, make_hyperparams

# A difference at least this large means "not the same computation" (wrong key, wrong mask).
DIFFERENT = 1e-3

# The MLP trains with momentum SGD, not Adam: behind BatchNorm some gradients are zero in exact
# arithmetic (the pre-norm bias; kernel rows of inputs constant over a minibatch, as digits'
# rarely-inked pixels are), so they are float rounding noise, and Adam's g / (|g| + eps) turns
# that noise into steps of up to lr, different in any two programs (measured: 6e-4 on
# layer-0 kernels after one step at lr 3e-3). SGD keeps them at lr x 1e-9.
STEPS, EVAL, BATCH = 24, 12, 32  # two chunks: the carried state crosses a chunk boundary
MLP_SPEC = MLPSpec(name="mlp", hidden=[16], norm="batch", dropout=0.2)
MLP_STRUCTURE = Structure(MLP_SPEC, "cross_entropy", "momentum", "constant", BATCH, STEPS, EVAL)
# (one optax object per LR: nnx.jit then compiles the reference step once per LR, not per lane)
MLP_TX = functools.cache(lambda lr: optax.sgd(lr, momentum=0.9))  # the "momentum" entry
MLP_TOL = {"loss_rtol": 2e-6, "rtol": 1e-5, "atol": 2e-6}
# 2 learning rates x 2 seeds: one slice of width 4 (GOLDILOCKS_CPU_LANE_WIDTH=8)
LRS = [1e-2, 1e-1, 1e-2, 1e-1]
SEEDS = [0, 0, 1, 1]
# The loss grows 1e10, 1e19, 1e29, then is NaN at step 4. (With Adam, whose step is ~lr
# whatever the gradient, 1e6 stays finite, ~1e13, and only the patience rule freezes it.)
NAN_LR = 1e6

TF_SPEC = TransformerSpec(name="transformer", d_model=16, n_layers=1, n_heads=2, dropout=0.1)
TF_STEPS, TF_BATCH = 20, 16
TF_STRUCTURE = Structure(TF_SPEC, "cross_entropy", "adam", "constant", TF_BATCH, TF_STEPS, TF_STEPS)
TF_TX = functools.cache(optax.adam)
TF_LRS = [1e-3, 1e-2, 1e-3, 1e-2]
TF_SEEDS = [0, 0, 1, 1]
# Adam: parameters to lr / 200 (half a percent of one step), the rest relative.
TF_TOL = {"loss_rtol": 1e-5, "rtol": 1e-5, "atol": 1e-6, "param_atol_per_lr": 5e-3}


# --------------------------------------------------------------------------- helpers
def _hyperparams(optimizer, lrs):
    n = len(lrs)
    opt = {k: np.full(n, v) for k, v in OPTIMIZERS[optimizer].defaults.items()}
    return make_hyperparams(lrs, opt, {})


def _host(tree):
    """A host copy (RNG keys as their uint32 data): an EvalPoint's device state is donated
    to the next chunk, and a reference module goes on changing."""

    def copy(a):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a = jax.random.key_data(a)
        return np.array(a, copy=True)

    return jax.tree.map(copy, tree)


class Run:
    """A population's EvalPoints, each point's state copied to the host as it came."""

    def __init__(self, structure, data, lrs, seeds, timing=None):
        self.lrs = list(lrs)
        self.points, self.states = [], []
        hp = _hyperparams(structure.optimizer, lrs)
        for point in train_population(structure, data, hp, np.asarray(seeds), timing=timing):
            self.states.append(_host(point.state))
            self.points.append(point)
        self.width = self.points[-1].width
        self.timing = timing

    def step_losses(self) -> np.ndarray:
        return np.concatenate([p.step_losses for p in self.points[1:]], axis=1)

    def lane(self, i: int, point: int = -1):
        """Lane i's LaneState (host arrays) at one EvalPoint."""
        slice_, pos = divmod(i, self.width)
        return jax.tree.map(lambda a: a[pos], self.states[point][slice_])


def _cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


@nnx.jit
def _train_step(model, optimizer, x, y):
    def loss_fn(model):
        return _cross_entropy(model(x), y)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def _eval_loss(model, x, y):
    return _cross_entropy(model(x), y)


class Reference:
    """One lane trained alone by a plain NNX + optax loop (no vmap, no scan, no masking)."""

    def __init__(
        self,
        build: Callable[[nnx.Rngs], nnx.Module],
        data,
        batch: int,
        steps: int,
        tx: optax.GradientTransformation,
        seed: int,
        *,
        dropout_seed: int | None = None,
        stop: int | None = None,
    ):
        key = jax.random.key(seed)
        rngs = lane_rngs(key)
        if dropout_seed is not None:  # this lane's init, another seed's dropout stream
            rngs = nnx.Rngs(
                jax.random.fold_in(key, 2),
                params=key,
                dropout=jax.random.fold_in(jax.random.key(dropout_seed), 1),
            )
        model = self.model = build(rngs)
        self.initial_params, self.initial_state = self.split()
        xv, yv = jnp.asarray(data.x_val), jnp.asarray(data.y_val)
        model.eval()
        self.initial_val_loss = float(_eval_loss(model, xv, yv))
        model.train()
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
        plan = batch_plan(data.n_train, batch, steps, 0)[:stop]  # the sweep's data_seed 0
        self.losses = np.array(
            [float(_train_step(model, optimizer, x[rows], y[rows])) for rows in plan]
        )
        model.eval()
        self.val_loss = float(_eval_loss(model, xv, yv))

    def split(self):
        """(params, everything else) as pure host dicts, as a lane holds them."""
        _, params, rest = nnx.split(self.model, nnx.Param, ...)
        return _host(nnx.to_pure_dict(params)), _host(nnx.to_pure_dict(rest))


def _assert_trees_close(got, want, rtol, atol):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for (path, g), w in zip(
        jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want), strict=True
    ):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path))


def _assert_trees_equal(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for (path, g), w in zip(
        jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want), strict=True
    ):
        np.testing.assert_array_equal(g, w, err_msg=jax.tree_util.keystr(path))


def _trees_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))


def _rng_streams(model_state) -> dict[str, dict[str, np.ndarray]]:
    """{"blocks.0.attn_drop": {"key": (2,) uint32, "count": ()}, ...}: a lane's Dropout streams."""
    streams: dict[str, dict[str, np.ndarray]] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(model_state)[0]:
        names = [str(getattr(p, "key", p)) for p in path]
        if "rngs" in names:
            where = ".".join(names[: names.index("rngs")])
            streams.setdefault(where, {})[names[-1]] = leaf
    return streams


def _without_key_bias(params):
    """The transformer's params with the key projection's bias zeroed. It adds q . b_k to every
    score of a query's row alike, which softmax ignores: its gradient is zero in real
    arithmetic, rounding noise in float32, and Adam's g / (|g| + eps) makes that noise a step of
    up to lr, different in any two programs (measured: 1.7e-3 apart after 20 steps at lr 1e-2).
    Nothing downstream sees it: the losses match to 1e-6."""
    params = jax.tree.map(np.copy, params)
    d = TF_SPEC.d_model
    for block in params["blocks"].values():
        block["attn"]["qkv"]["bias"][d : 2 * d] = 0.0
    return params


def _build_mlp(data):
    return lambda rngs: nets.MLP(
        n_features=data.n_features,
        n_outputs=data.num_classes,
        hidden=[16],
        norm="batch",
        dropout=0.2,
        rngs=rngs,
    )


def _build_transformer(data):
    return lambda rngs: Transformer(
        vocab_size=data.vocab_size,
        n_outputs=data.num_classes,
        input_shape=data.input_shape,
        d_model=16,
        n_layers=1,
        n_heads=2,
        dropout=0.1,
        rngs=rngs,
    )


def _assert_lanes_match_references(run: Run, refs: list[Reference], tol: dict, blank=None):
    """Every lane's step losses, final validation loss, params and carried state. `blank`
    zeroes params whose gradient is exactly zero in real arithmetic (left to rounding)."""
    blank = blank or (lambda params: params)
    losses = run.step_losses()
    assert losses.shape == (len(refs), len(refs[0].losses))
    for i, ref in enumerate(refs):
        lane = run.lane(i)
        np.testing.assert_allclose(losses[i], ref.losses, rtol=tol["loss_rtol"], err_msg=f"{i}")
        np.testing.assert_allclose(
            run.points[-1].val_loss[i], ref.val_loss, rtol=tol["loss_rtol"], err_msg=f"lane {i}"
        )
        params, state = ref.split()
        param_atol = tol.get("param_atol_per_lr", 0.0) * run.lrs[i] or tol["atol"]
        _assert_trees_close(blank(lane.params), blank(params), tol["rtol"], param_atol)
        # BatchNorm's running statistics (close) and the dropout streams (exact: uint32)
        _assert_trees_close(lane.model_state, state, tol["rtol"], tol["atol"])
        _assert_trees_equal(_rng_streams(lane.model_state), _rng_streams(state))
        assert int(lane.diverged_at) == -1 and not bool(lane.frozen)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def mlp_run(digits):
    return Run(MLP_STRUCTURE, digits, LRS, SEEDS, timing=Timing())


@pytest.fixture(scope="module")
def mlp_refs(digits):
    build = _build_mlp(digits)
    return [
        Reference(build, digits, BATCH, STEPS, MLP_TX(lr), seed)
        for lr, seed in zip(LRS, SEEDS, strict=True)
    ]


@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory):
    """3 kB of Python's help topics as a text file: ~300 windows of 8 characters."""
    from pydoc_data import topics

    corpus = "\n\n".join(topics.topics[k] for k in sorted(topics.topics))[:3000]
    path = tmp_path_factory.mktemp("text") / "tiny.txt"
    path.write_text(corpus, encoding="utf-8")
    return load_dataset(text=str(path), block_size=8, val_fraction=0.2)


@pytest.fixture(scope="module")
def tf_run(tiny_text):
    return Run(TF_STRUCTURE, tiny_text, TF_LRS, TF_SEEDS)


@pytest.fixture(scope="module")
def tf_refs(tiny_text):
    build = _build_transformer(tiny_text)
    return [
        Reference(build, tiny_text, TF_BATCH, TF_STEPS, TF_TX(lr), seed)
        for lr, seed in zip(TF_LRS, TF_SEEDS, strict=True)
    ]


@pytest.fixture(scope="module")
def nan_run(digits, mlp_run):  # after mlp_run, which pays the compile
    return Run(MLP_STRUCTURE, digits, [*LRS[:3], NAN_LR], SEEDS, timing=Timing())


# --------------------------------------------------------------------------- 1. MLP
def test_mlp_lanes_start_as_the_module_built_with_lane_rngs(mlp_run, mlp_refs):
    """Step 0: each lane is `MLP(..., rngs=lane_rngs(key(seed)))`, bit for bit."""
    point = mlp_run.points[0]
    assert point.step == 0 and point.width == 4
    for i, ref in enumerate(mlp_refs):
        lane = mlp_run.lane(i, point=0)
        _assert_trees_equal(lane.params, ref.initial_params)
        _assert_trees_equal(lane.model_state, ref.initial_state)
        np.testing.assert_allclose(point.val_loss[i], ref.initial_val_loss, rtol=2e-6)
    # The same seed, the same init and dropout stream; another seed, other ones.
    lane = [mlp_run.lane(i, point=0) for i in range(4)]
    carried = [(x.params, x.model_state) for x in lane]  # (opt_state holds each lane's LR)
    assert _trees_equal(carried[0], carried[1]) and _trees_equal(carried[2], carried[3])
    assert not _trees_equal(lane[0].params, lane[2].params)
    assert not _trees_equal(_rng_streams(lane[0].model_state), _rng_streams(lane[2].model_state))


def test_mlp_with_batchnorm_and_dropout_matches_a_plain_nnx_loop(mlp_run, mlp_refs):
    _assert_lanes_match_references(mlp_run, mlp_refs, MLP_TOL)
    for i, ref in enumerate(mlp_refs):
        bn = mlp_run.lane(i).model_state["norms"][0]
        for stat, module_stat in (
            ("mean", ref.model.norms[0].mean),
            ("var", ref.model.norms[0].var),
        ):
            np.testing.assert_allclose(
                bn[stat], np.asarray(module_stat[...]), rtol=MLP_TOL["rtol"], atol=MLP_TOL["atol"]
            )
        # trained: no longer BatchNorm's initial zeros and ones
        assert np.abs(bn["mean"]).max() > DIFFERENT and np.abs(bn["var"] - 1).max() > 10 * DIFFERENT


def test_each_chunk_evaluates_with_the_state_reached_so_far(mlp_run, digits):
    """The evaluation after chunk 1 (step EVAL) uses that step's params and running statistics."""
    build = _build_mlp(digits)
    for i in (0, 3):
        half = Reference(build, digits, BATCH, STEPS, MLP_TX(LRS[i]), SEEDS[i], stop=EVAL)
        assert mlp_run.points[1].step == EVAL
        np.testing.assert_allclose(
            mlp_run.points[1].val_loss[i], half.val_loss, rtol=MLP_TOL["loss_rtol"]
        )
        lane = mlp_run.lane(i, point=1)
        params, state = half.split()
        _assert_trees_close(lane.params, params, MLP_TOL["rtol"], MLP_TOL["atol"])
        _assert_trees_close(lane.model_state, state, MLP_TOL["rtol"], MLP_TOL["atol"])


# --------------------------------------------------------------------------- 2. transformer
def test_transformer_with_dropout_matches_a_plain_nnx_loop(tf_run, tf_refs, tiny_text):
    assert tiny_text.y_train.shape[1:] == (8,)  # (B, T) next-token targets
    _assert_lanes_match_references(tf_run, tf_refs, TF_TOL, blank=_without_key_bias)
    for i, ref in enumerate(tf_refs):
        # The embeddings' normal(0.02) init, traced under vmap here and run op by op in the
        # reference, rounds its scaling differently: 1 ulp apart (the MLP's are bit-identical).
        _assert_trees_close(tf_run.lane(i, point=0).params, ref.initial_params, 3e-7, 0)
        _assert_trees_equal(tf_run.lane(i, point=0).model_state, ref.initial_state)
        np.testing.assert_allclose(
            tf_run.points[0].val_loss[i], ref.initial_val_loss, rtol=TF_TOL["loss_rtol"]
        )
        # One stream per Dropout layer, each its own key, each drawn once per training step.
        streams = _rng_streams(tf_run.lane(i).model_state)
        assert set(streams) == {"blocks.0.attn_drop", "blocks.0.mlp_drop"}
        attn, mlp = streams["blocks.0.attn_drop"], streams["blocks.0.mlp_drop"]
        assert not np.array_equal(attn["key"], mlp["key"])
        assert int(attn["count"]) == int(mlp["count"]) == TF_STEPS
    first = [_rng_streams(tf_run.lane(i).model_state)["blocks.0.attn_drop"]["key"] for i in (0, 2)]
    assert not np.array_equal(*first)  # seeds 0 and 1


# --------------------------------------------------------------------------- 3. per-lane state
def test_batchnorm_statistics_are_each_lanes_own(mlp_run):
    bn = [mlp_run.lane(i).model_state["norms"][0] for i in range(4)]
    for a, b in [(0, 1), (2, 3), (0, 2), (1, 3)]:  # other LR, same init; other seed
        for stat in ("mean", "var"):
            assert np.abs(bn[a][stat] - bn[b][stat]).max() > DIFFERENT, (a, b, stat)


def test_dropout_masks_follow_each_lanes_own_seed(mlp_run, mlp_refs, digits):
    """Lane 0 (seed 0) retrained with seed 1's dropout stream and its own init: other masks,
    other losses. So lane 0 matched its reference with its own stream, not just any."""
    build = _build_mlp(digits)
    swapped = Reference(build, digits, BATCH, STEPS, MLP_TX(LRS[0]), SEEDS[0], dropout_seed=1)
    _assert_trees_equal(swapped.initial_params, mlp_refs[0].initial_params)
    got = mlp_run.step_losses()[0]
    np.testing.assert_allclose(got, mlp_refs[0].losses, rtol=MLP_TOL["loss_rtol"])
    assert np.abs(got[0] - swapped.losses[0]) > DIFFERENT  # the first mask already differs
    assert np.abs(got - swapped.losses).max() > 10 * DIFFERENT
    # Every lane drew one mask per training step and none in evaluation; the key stays put
    # (NNX folds the count into it), one key per seed.
    streams = [_rng_streams(mlp_run.lane(i).model_state)["dropout"] for i in range(4)]
    assert [int(s["count"]) for s in streams] == [STEPS] * 4
    assert [int(_rng_streams(mlp_run.lane(i, 1).model_state)["dropout"]["count"])
            for i in range(4)] == [EVAL] * 4  # fmt: skip
    assert np.array_equal(streams[0]["key"], streams[1]["key"])
    assert not np.array_equal(streams[0]["key"], streams[2]["key"])
    for i in range(4):
        np.testing.assert_array_equal(
            streams[i]["key"], _rng_streams(mlp_run.lane(i, 0).model_state)["dropout"]["key"]
        )
    # Same seed, same init, same mask, same batch: lanes 0 and 1 agree on the first step.
    assert mlp_run.step_losses()[0, 0] == mlp_run.step_losses()[1, 0]


# --------------------------------------------------------------------------- 4. divergence
def test_a_nan_lane_is_frozen_and_leaves_the_others_bit_identical(mlp_run, nan_run, digits):
    """Lane 3 at lr 1e6 goes NaN; lanes 0-2 are the same numbers, bit for bit, as in `mlp_run`
    (where lane 3 trains normally): the same compiled program, one slice of width 4."""
    assert nan_run.width == mlp_run.width == 4 and len(nan_run.states[-1]) == 1
    assert nan_run.timing.compiles == 0
    for i in range(3):
        for a, b, sa, sb in zip(
            mlp_run.points, nan_run.points, mlp_run.states, nan_run.states, strict=True
        ):
            np.testing.assert_array_equal(a.step_losses[i], b.step_losses[i])
            np.testing.assert_array_equal(a.val_loss[i], b.val_loss[i])
            np.testing.assert_array_equal(
                a.val_metrics["accuracy"][i], b.val_metrics["accuracy"][i]
            )
            assert (a.init_loss is None) == (b.init_loss is None)
            if a.init_loss is not None:
                np.testing.assert_array_equal(a.init_loss[i], b.init_loss[i])
            lane_a, lane_b = (jax.tree.map(lambda x, i=i: x[i], st[0]) for st in (sa, sb))
            _assert_trees_equal(
                (lane_a.params, lane_a.model_state), (lane_b.params, lane_b.model_state)
            )
    assert list(nan_run.points[-1].diverged_at[:3]) == [-1] * 3

    # Lane 3: diverged where the reference's loss turns non-finite ...
    at = int(nan_run.points[-1].diverged_at[3])
    assert 1 <= at < EVAL  # it trained a step or more, and froze in the first chunk
    losses = nan_run.step_losses()[3]
    assert np.all(np.isfinite(losses[:at])) and np.all(np.isnan(losses[at:]))
    blowup = Reference(_build_mlp(digits), digits, BATCH, STEPS, MLP_TX(NAN_LR), SEEDS[3],
                       stop=at + 1)  # fmt: skip
    assert np.all(np.isfinite(blowup.losses[:at])) and not np.isfinite(blowup.losses[at])
    np.testing.assert_allclose(losses[:at], blowup.losses[:at], rtol=MLP_TOL["loss_rtol"])
    # ... and frozen before that step's update: applied, it turns the output layer and the
    # running statistics NaN (as in the reference); the lane's are finite, its dropout stream
    # stopped at `at` draws, and nothing moves from then on.
    frozen = nan_run.lane(3)
    assert bool(frozen.frozen) and int(frozen.diverged_at) == at
    applied_params, applied_state = blowup.split()
    for tree, applied in (
        (frozen.params["layers"][1], applied_params["layers"][1]),
        (frozen.model_state["norms"], applied_state["norms"]),
    ):
        assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(tree))
        assert not all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(applied))
    assert int(_rng_streams(frozen.model_state)["dropout"]["count"]) == at
    later = [k for k, p in enumerate(nan_run.points) if p.step > at]
    assert len(later) == 2
    for k in later:
        _assert_trees_equal(
            (nan_run.lane(3, k).params, nan_run.lane(3, k).model_state),
            (frozen.params, frozen.model_state),
        )
        np.testing.assert_array_equal(
            nan_run.points[k].val_loss[3], nan_run.points[later[0]].val_loss[3]
        )


# --------------------------------------------------------------------------- 5. compiles
def test_a_second_population_with_other_numbers_does_not_recompile(mlp_run, digits):
    # This structure is this file's own: its first population compiled init, eval and chunk.
    assert mlp_run.timing.compiles == 3
    backend_compiles = []

    def listener(event, duration, **kwargs):
        if "backend_compile" in event:
            backend_compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    timing = Timing()
    try:
        other = Run(MLP_STRUCTURE, digits, [3e-2, 3e-3, 5e-2, 0.2], [4, 9, 4, 9], timing=timing)
        # another count of distinct seeds (4, not 2): the init program's shape is the same
        Run(MLP_STRUCTURE, digits, [3e-2, 3e-3, 5e-2, 0.2], [1, 2, 3, 5], timing=timing)
    finally:
        jax.monitoring.clear_event_listeners()
    assert timing.compiles == 0 and timing.compile_s == 0.0
    assert backend_compiles == []
    # Other numbers indeed: another init, trained all the same.
    assert not _trees_equal(other.lane(0, 0).params, mlp_run.lane(0, 0).params)
    assert np.all(np.isfinite(other.points[-1].val_loss))
    assert np.all(other.points[-1].val_loss < other.points[0].val_loss)
