"""The verdict's invariants with refinement rounds: lanes of later rounds (LRs in between the
grid's) keep every rule of test_verdict_rules, and the precision fields agree with the edges;
what the planner would ask next is new, and stays within the allowed extensions."""

from __future__ import annotations

import dataclasses
import math

import test_verdict_rules as rules
from hypothesis import given, settings
from hypothesis import strategies as st

from sweeps.plan.refine import Extended, next_lrs
from sweeps.verdict.analysis import analyze


@st.composite
def refined_histories(draw):
    """A group's histories where every other LR came from a later round (2 or 3)."""
    results = draw(rules.group_histories())
    lrs = sorted({r.lane.learning_rate for r in results})
    later = {lr: draw(st.integers(2, 3)) for lr in lrs[1::2]}
    for r in results:
        r.lane = dataclasses.replace(r.lane, round=later.get(r.lane.learning_rate, 1))
    return results


@settings(max_examples=200, deadline=None)
@given(refined_histories(), st.integers(1, 3), st.integers(0, 2))
def test_invariants_hold_with_rounds(results, rounds_left, extend):
    rules.test_verdict_invariants.hypothesis.inner_test(results)  # every rule of the grid's
    (v,), _ = analyze(results, loss="cross_entropy")
    assert v.rounds == max(r.lane.round for r in results)
    if v.edge_ratio is not None:
        assert v.edge_ratio == v.min_diverged_lr / v.max_undiverged_lr and v.edge_ratio > 1
    if v.best_lr is not None:
        low, high = v.best_lr_bracket
        assert low <= v.best_lr <= high
    tested = v.curve["learning_rate"]
    ext = Extended()
    new = next_lrs(
        tested, v.best_lr, v.max_stable_lr, v.min_diverged_lr, ratio=1.1,
        rounds_left=rounds_left, step=10.0, extend=extend, extended=ext,
    )  # fmt: skip
    assert all(min(abs(math.log(x / t)) for t in tested) > 1e-9 for x in new)
    assert ext.low <= extend and ext.high <= extend
    assert all(min(tested) / 10.0**extend * 0.999 <= x <= max(tested) * 10.0**extend * 1.001
               for x in new)  # fmt: skip
