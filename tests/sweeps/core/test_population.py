"""The population trainer against independent references: plain optax loops, one lane at a time."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from models import MLPSpec, make_model
from models.specs import DataShape
from sweeps.core.batches import batch_plan
from sweeps.core.optimizers import OPTIMIZERS
from sweeps.core.population import train_population
from sweeps.core.program import Structure, get_program, make_hyperparams

STEPS, BATCH, EVAL = 40, 32, 10
MODEL = MLPSpec(name="mlp", hidden=[16])


def _structure(optimizer: str, schedule: str = "constant", **kw) -> Structure:
    return Structure(MODEL, "cross_entropy", optimizer, schedule, BATCH, STEPS, EVAL, **kw)


def _hyperparams(optimizer: str, lrs, schedule_args=None, **opt_overrides):
    n = len(lrs)
    defaults = {**OPTIMIZERS[optimizer].defaults, **opt_overrides}
    opt_args = {k: np.full(n, v) for k, v in defaults.items()}
    sched = {k: np.full(n, v) for k, v in (schedule_args or {}).items()}
    return make_hyperparams(lrs, opt_args, sched)


def _train(structure, data, hp, seeds, **kw):
    points = list(train_population(structure, data, hp, np.asarray(seeds), **kw))
    return points, points[-1].state


def _lane_params(states, i):
    return jax.tree.map(lambda a: a[i], states[0].params)


def _reference(data, tx, seed):
    """The same configuration trained alone by a plain optax loop (no vmap, no masking)."""
    model = make_model(MODEL, DataShape(n_outputs=data.num_classes, input_shape=data.input_shape))
    params, _ = model.init(jax.random.key(seed))
    state = tx.init(params)
    plan = batch_plan(data.n_train, BATCH, STEPS, 0)
    x_train, y_train = jnp.asarray(data.x_train), jnp.asarray(data.y_train)

    @jax.jit
    def step(params, state, rows):
        def loss_fn(p):
            logits, _ = model.apply(p, {}, x_train[rows], True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y_train[rows]).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    losses = []
    for rows in plan:
        params, state, loss = step(params, state, jnp.asarray(rows))
        losses.append(float(loss))
    return params, np.array(losses)


CASES = [
    ("sgd", "constant", {}, lambda lr: optax.sgd(lr)),
    ("momentum", "constant", {}, lambda lr: optax.sgd(lr, momentum=0.9)),
    ("adam", "constant", {}, lambda lr: optax.adam(lr)),
    (
        "adam",
        "cosine",
        {"final_fraction": 0.0},
        lambda lr: optax.adam(optax.cosine_decay_schedule(lr, STEPS)),
    ),
    (
        "momentum",
        "warmup_cosine",
        {"warmup_fraction": 0.25, "final_fraction": 0.1},
        lambda lr: optax.sgd(
            optax.warmup_cosine_decay_schedule(0.0, lr, 10, STEPS, end_value=0.1 * lr), momentum=0.9
        ),
    ),
]


@pytest.mark.parametrize(("optimizer", "schedule", "sched_args", "reference"), CASES)
def test_every_lane_matches_a_plain_optax_loop(iris, optimizer, schedule, sched_args, reference):
    lrs = [3e-3, 3e-2, 0.1]
    seeds = [0, 1, 0]
    points, states = _train(
        _structure(optimizer, schedule), iris, _hyperparams(optimizer, lrs, sched_args), seeds
    )
    train_losses = np.concatenate([p.step_losses for p in points[1:]], axis=1)
    for i, (lr, seed) in enumerate(zip(lrs, seeds, strict=True)):
        ref_params, ref_losses = _reference(iris, reference(lr), seed)
        np.testing.assert_allclose(train_losses[i], ref_losses, rtol=2e-4, atol=1e-6)
        got = jax.tree.leaves(_lane_params(states, i))
        want = jax.tree.leaves(ref_params)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=2e-4, atol=5e-5)


def test_a_nan_lane_leaves_every_other_lane_bit_identical(iris):
    structure = _structure("sgd")
    calm = _hyperparams("sgd", [1e-2, 1e-1, 0.5])
    wild = _hyperparams("sgd", [1e-2, 1e-1, 1e9])  # lane 2 overflows to inf/NaN at once
    calm_points, calm_states = _train(structure, iris, calm, [0, 1, 2])
    wild_points, wild_states = _train(structure, iris, wild, [0, 1, 2])

    assert wild_points[-1].diverged_at[2] >= 0
    assert calm_points[-1].diverged_at[2] == -1
    for i in (0, 1):
        for a, b in zip(
            jax.tree.leaves(_lane_params(calm_states, i)),
            jax.tree.leaves(_lane_params(wild_states, i)),
            strict=True,
        ):
            assert np.array_equal(np.asarray(a), np.asarray(b))
        for pa, pb in zip(calm_points, wild_points, strict=True):
            assert np.array_equal(pa.val_loss[i], pb.val_loss[i])
    # The frozen lane is masked from its divergence on: no loss recorded, no update applied.
    at = int(wild_points[-1].diverged_at[2])
    losses = np.concatenate([p.step_losses[2] for p in wild_points[1:]])
    assert np.all(np.isnan(losses[at:])) and np.all(np.isfinite(losses[:at]))
    after = [p.val_loss[2] for p in wild_points if p.step > at]
    assert len(after) >= 2 and all(np.array_equal(v, after[0], equal_nan=True) for v in after)


def test_a_second_population_with_other_numbers_does_not_recompile(iris):
    structure = _structure("adam", "warmup_cosine")
    sched = {"warmup_fraction": 0.1, "final_fraction": 0.0}
    list(
        train_population(
            structure, iris, _hyperparams("adam", [1e-3, 1e-2], sched), np.array([0, 1])
        )
    )
    program = get_program(structure, iris)
    compiles_before = program.compiles

    backend_compiles = []

    def listener(event, duration, **kwargs):
        if "backend_compile" in event:
            backend_compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        other = _hyperparams(
            "adam", [5e-2, 7e-4], {"warmup_fraction": 0.3, "final_fraction": 0.2}, b1=0.8
        )
        points = list(train_population(structure, iris, other, np.array([3, 4])))
    finally:
        jax.monitoring.clear_event_listeners()
    assert program.compiles == compiles_before
    assert backend_compiles == []
    assert np.all(np.isfinite(points[-1].val_loss))


def test_a_transient_spike_is_not_frozen_but_a_sustained_one_is(iris):
    """patience decides: a lane above the threshold for fewer steps than patience trains on."""
    # A huge LR for plain SGD on a tiny MLP: loss shoots up and stays up.
    structure = _structure("sgd", patience=5, diverge_factor=1.5)
    points, _ = _train(structure, iris, _hyperparams("sgd", [1e-2, 30.0]), [0, 0])
    last = points[-1]
    assert last.diverged_at[0] == -1 and not last.spiked[0]
    assert last.diverged_at[1] >= 0 and last.spiked[1]


def test_eval_points_stream_every_eval_every_steps(iris):
    structure = Structure(MODEL, "cross_entropy", "sgd", "constant", BATCH, 35, 10)
    points = list(train_population(structure, iris, _hyperparams("sgd", [0.1]), np.array([0])))
    assert [p.step for p in points] == [0, 10, 20, 30, 35]
    assert [p.step_losses.shape[1] for p in points] == [0, 10, 10, 10, 5]
    assert points[0].val_loss[0] > points[-1].val_loss[0]


def test_wide_populations_are_sliced_to_the_width_given(iris):
    structure = _structure("adam")
    lrs = [1e-3, 3e-3, 1e-2, 3e-2, 0.1]
    hp, seeds = _hyperparams("adam", lrs), [0, 1, 2, 3, 4]
    sliced, sliced_states = _train(structure, iris, hp, seeds, width=2)
    whole, _ = _train(structure, iris, _hyperparams("adam", lrs), seeds, width=8)
    assert len(sliced_states) == 3
    np.testing.assert_allclose(sliced[-1].val_loss, whole[-1].val_loss, rtol=1e-5)


def test_slices_trained_side_by_side_give_the_results_of_slices_in_turn(iris):
    structure = _structure("adam")
    lrs = [1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0]  # 4 slices, one padded

    def train(threads):
        hp = _hyperparams("adam", lrs)
        return _train(structure, iris, hp, range(len(lrs)), width=2, threads=threads)[0]

    apart, together = train(1), train(3)
    assert len(apart) == len(together) == 5
    for a, b in zip(apart, together, strict=True):
        np.testing.assert_array_equal(a.val_loss, b.val_loss)
        np.testing.assert_array_equal(a.step_losses, b.step_losses)
        np.testing.assert_array_equal(a.diverged_at, b.diverged_at)


def test_each_slice_runs_its_calls_at_the_same_time():
    """Two calls that each wait for the other: they only finish if they run side by side."""
    import threading

    from sweeps.core.population import _each_slice

    meet = threading.Barrier(2, timeout=10)
    names = _each_slice(
        2, lambda i: (meet.wait(), threading.current_thread().name)[1], [(0,), (1,)]
    )
    assert len(set(names)) == 2
    assert _each_slice(1, lambda i: i * 2, [(1,), (2,)]) == [2, 4]  # one thread: in order


def test_a_checkpoint_resumes_at_its_own_width_whatever_this_host_would_choose(iris):
    structure = _structure("adam")
    lrs = [1e-3, 1e-2, 0.1, 1.0]
    hp, seeds = _hyperparams("adam", lrs), np.arange(4)
    whole, saved = [], None
    for point in train_population(structure, iris, hp, seeds, width=2):  # cut at 2 lanes
        whole.append(point)
        if point.step == 20:  # copied as a checkpoint is, before the next chunk donates it
            saved = [jax.tree.map(np.asarray, s) for s in point.state]
    # on resume this host would choose 4: the checkpoint's width wins
    resumed = list(
        train_population(structure, iris, hp, seeds, start=saved, start_step=20, width=4)
    )
    assert [p.step for p in resumed] == [30, 40] and {p.width for p in resumed} == {2}
    np.testing.assert_array_equal(resumed[-1].val_loss, whole[-1].val_loss)
    with pytest.raises(ValueError, match="do not cut"):
        five = _hyperparams("adam", [*lrs, 3.0])  # three slices of 2, not the two saved
        list(train_population(structure, iris, five, np.arange(5), start=saved, start_step=20))
