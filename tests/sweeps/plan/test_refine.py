"""Refinement rounds, the pure part: which LRs a group's verdict asks for next."""

from __future__ import annotations

import math

import pytest
from conftest import tiny_spec_dict

from sweeps.errors import SpecError
from sweeps.plan.refine import Extended, bracket, cut, dense_count, next_lrs, parts_for
from sweeps.spec import parse_spec

T = math.log(1.1)


def test_a_gap_is_cut_so_the_rounds_left_reach_the_ratio():
    gap = math.log(10.0)  # 24x the target's log width
    for rounds in (1, 2, 3, 5):
        parts = parts_for(gap, T, rounds)
        assert (gap / parts**rounds) <= T  # reached in time
        assert parts == 1 or gap / (parts - 1) ** rounds > T  # and no finer than needed
    assert parts_for(T * 0.99, T, 3) == 1  # fine already: nothing to add
    assert parts_for(T * 1.5, T, 1) == 2


def test_cut_is_equal_in_log_space():
    lrs = [1.0, *cut(1.0, 8.0, 3), 8.0]
    assert lrs[1:-1] == pytest.approx([2.0, 4.0])


def refine(tested, best, stable, diverged, rounds=3, extend=2, extended=None):
    return next_lrs(
        tested, best, stable, diverged, ratio=1.1, rounds_left=rounds, step=10.0,
        extend=extend, extended=extended if extended is not None else Extended(),
    )  # fmt: skip


def test_the_edge_and_both_sides_of_the_best_are_cut():
    tested = [1e-3, 1e-2, 1e-1, 1.0]
    new = refine(tested, best=1e-2, stable=1e-1, diverged=1.0)
    # 10x gaps, three rounds: thirds -> two LRs in each of (1e-3, 1e-2), (1e-2, 1e-1), (1e-1, 1)
    assert len(new) == 6 and new == sorted(new)
    assert all(t not in new for t in tested)
    for lo, hi in ((1e-3, 1e-2), (1e-2, 1e-1), (1e-1, 1.0)):
        assert sum(lo < x < hi for x in new) == 2


def test_the_best_just_below_the_edge_cuts_that_gap_once():
    new = refine([1e-2, 1e-1, 1.0], best=1e-1, stable=1e-1, diverged=1.0)
    assert sum(1e-1 < x < 1.0 for x in new) == 2 and sum(1e-2 < x < 1e-1 for x in new) == 2


def test_precise_enough_adds_nothing():
    tested = [0.95, 1.0, 1.05, 1.1]
    assert refine(tested, best=1.0, stable=1.05, diverged=1.1) == []


def test_a_best_on_the_range_edge_extends_a_bounded_number_of_times():
    ext = Extended()
    tested = [1e-3, 1e-2, 1e-1]
    first = refine(tested, best=1e-1, stable=1e-1, diverged=None, extended=ext)
    assert max(first) == pytest.approx(1.0)  # one grid step above
    tested += first
    second = refine(tested, best=1.0, stable=1.0, diverged=None, extended=ext)
    assert max(second) == pytest.approx(10.0)
    third = refine(tested + second, best=10.0, stable=10.0, diverged=None, extended=ext)
    assert max(third) < 10.0  # extend: 2 spent
    assert ext.high == 2 and ext.low == 0


def test_nothing_trained_looks_below():
    ext = Extended()
    assert refine([1e-2, 1e-1], None, None, 1e-2, extended=ext) == [pytest.approx(1e-3)]
    assert refine([1e-2, 1e-1], None, None, 1e-2, extend=1, extended=ext) == []


def test_bracket_and_dense_count():
    assert bracket([1.0, 2.0, 4.0], 2.0) == [1.0, 4.0]
    assert bracket([1.0, 2.0, 4.0], 4.0) == [2.0, 4.0]
    assert bracket([1.0], None) is None
    assert dense_count(1e-4, 100.0, 1.12) == 123  # ceil(ln 1e6 / ln 1.12) + 1
    assert dense_count(1.0, 1.0, 1.1) == 1


@pytest.mark.parametrize(
    ("search", "field"),
    [
        ({"refine": {"ratio": 1.0}}, "search.refine.ratio"),
        ({"refine": {"ratio": "1.1"}}, "search.refine.ratio"),
        ({"refine": {"max_rounds": 1}}, "search.refine.max_rounds"),
        ({"refine": {"rounds": 3}}, "search.refine.rounds"),
        ({"refine": {}, "method": "tpe"}, "search"),
        ({"prune": {"at": [0.5, 0.25]}}, "search.prune.at"),
        ({"prune": {"at": [1.0]}}, "search.prune.at"),
    ],
)
def test_refine_and_prune_are_strict(search, field):
    raw = tiny_spec_dict()
    raw["search"].update(search)
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    assert any(e.startswith(field + ":") for e in err.value.errors), err.value.errors


def test_prune_is_accepted():
    raw = tiny_spec_dict()
    raw["search"]["prune"] = {"at": [0.25, 0.5]}
    assert parse_spec(raw).search.prune.at == [0.25, 0.5]


def test_refine_refuses_asha():
    raw = tiny_spec_dict(scheduler={"name": "asha"})
    raw["search"]["refine"] = {"ratio": 1.2}
    with pytest.raises(SpecError, match="scheduler.name: none"):
        parse_spec(raw)
