"""Words that match the curves (issue 22, item 5): the cases a user's first hour found, as
synthetic histories with the shapes measured there."""

from __future__ import annotations

import dataclasses
import math

import pytest
from test_verdict_rules import LN10, by_lr, lane

from sweeps.console import console, print_verdict
from sweeps.verdict.analysis import analyze
from sweeps.verdict.plots import training_curves_figure
from sweeps.verdict.report import json_safe, lane_entry
from sweeps.verdict.words import verdict_markdown

NAN = math.nan


def clean(lr, final, acc, **kw):
    """A lane that trained smoothly down to `final` (validation loss), no spike."""
    mid = (LN10 + final) / 2
    return lane(lr, [mid, final + 0.1, final], [LN10, mid, final + 0.05, final], acc, **kw)


def cnn_momentum() -> list:
    """The CNN with momentum: 0.316 hit val 5.31 and ended at 1.47 (a spike that came back),
    1.0 went to NaN. The old verdict called 0.316 "max stable"."""
    return [
        clean(1e-2, 0.30, [0.1, 0.6, 0.85, 0.90], opt="momentum"),
        clean(3.16e-2, 0.08, [0.1, 0.8, 0.95, 0.978], opt="momentum"),
        clean(1e-1, 0.085, [0.1, 0.8, 0.95, 0.975], opt="momentum"),
        lane(
            3.16e-1,
            [1.2, 6.1, 1.3],
            [LN10, 1.4, 5.31, 1.47],
            [0.1, 0.5, 0.2, 0.55],
            opt="momentum",
        ),  # fmt: skip
        lane(
            1.0,
            [NAN, NAN, NAN],
            [LN10, NAN, NAN, NAN],
            [0.1] + [NAN] * 3,
            diverged_at=10,
            opt="momentum",
        ),  # fmt: skip
    ]


def test_no_lr_is_called_stable_whose_lanes_are_unstable():
    results = cnn_momentum()
    (v,), _ = analyze(results, loss="cross_entropy")
    assert by_lr(results)[3.16e-1].status == "unstable"
    assert v.min_diverged_lr == 1.0
    assert v.max_stable_lr == 1e-1  # was 0.316: the LR that spiked to 5.31
    assert v.first_unstable_lr == 3.16e-1
    assert v.max_stable_lr < v.first_unstable_lr < v.min_diverged_lr


def test_a_lane_above_the_best_that_trained_without_a_spike_is_too_high():
    """Stalled at 25 % accuracy above the best, loss never rose: too high, not unstable."""
    results = [
        clean(1e-3, 0.09, [0.1, 0.85, 0.95, 0.978]),
        clean(1e-2, 0.12, [0.1, 0.86, 0.94, 0.965]),
        lane(1e-1, [2.1, 1.95, 1.9], [LN10, 2.05, 1.95, 1.9], [0.1, 0.18, 0.22, 0.25]),
    ]
    (v,), _ = analyze(results, loss="cross_entropy")
    assert by_lr(results)[1e-1].status == "too_high"
    assert v.max_stable_lr == 1e-1 and v.first_unstable_lr is None  # stable, just too hot
    assert v.status_counts["too_high"] == 1 and v.status_counts["unstable"] == 0
    assert v.curve["status"][-1] == "too_high"


def test_a_lane_below_the_best_that_stopped_short_is_too_slow_not_stagnated():
    """95.5 % accuracy against the best's 97.8 %: it trained, too slowly; a lane that barely
    moved is still stagnated."""
    results = [
        lane(1e-5, [2.29, 2.28, 2.27], [LN10, 2.29, 2.28, 2.25], [0.1, 0.11, 0.12, 0.13]),
        clean(1e-4, 0.50, [0.1, 0.8, 0.93, 0.955]),  # 81 % of the way
        clean(1e-3, 0.09, [0.1, 0.85, 0.95, 0.978]),
        clean(1e-2, 0.095, [0.1, 0.85, 0.95, 0.975]),
    ]
    (v,), _ = analyze(results, loss="cross_entropy")
    assert by_lr(results)[1e-4].status == "too_slow"
    assert by_lr(results)[1e-5].status == "stagnated"
    assert v.best_lr == 1e-3 and v.zone == {"low": 1e-3, "high": 1e-2}


def collapsed():
    """val 2.33 -> 10.4 -> 39.5, never non-finite, training loss under the threshold at each
    eval point, not frozen by the trainer."""
    return [
        clean(1e-3, 0.09, [0.1, 0.85, 0.95, 0.978]),
        lane(1.0, [2.2, 2.6, 3.4], [LN10, 2.33, 10.4, 39.5], [0.1, 0.1, 0.1, 0.1], spiked=True),
    ]


def test_a_collapsed_lane_records_the_step_it_first_blew_up():
    results = collapsed()
    analyze(results, loss="cross_entropy")
    r = by_lr(results)[1.0]
    assert r.status == "diverged"
    assert r.diverged_at_step == 20  # the first eval above 4 x its start (10.4 > 9.2)


def test_the_x_of_a_collapsed_lane_is_drawn_where_it_blew_up():
    results = collapsed()
    (v,), _ = analyze(results, loss="cross_entropy")
    report = json_safe(
        {"name": "t", "groups": [dataclasses.asdict(v)], "lanes": [lane_entry(r) for r in results]}
    )
    (ax,) = [a for a in training_curves_figure(report).axes if a.get_lines()]
    xs = [x for line in ax.get_lines() if line.get_gid() == "diverged" for x in line.get_xdata()]
    assert xs == [20]  # not the last step (30)


def _table_report(results) -> dict:
    (v,), _ = analyze(results, loss="cross_entropy")
    return json_safe({"name": "t", "metric": "accuracy", "groups": [dataclasses.asdict(v)]})


def test_the_table_says_no_divergence_up_to_the_top_of_the_range():
    report = _table_report(
        [clean(1e-3, 0.3, [0.1, 0.8, 0.9, 0.93]), clean(1e-2, 0.09, [0.1, 0.85, 0.95, 0.978])]
    )
    assert report["groups"][0]["min_diverged_lr"] is None
    markdown = verdict_markdown(report)
    assert "| no divergence up to 0.01 |" in markdown
    with console.capture() as captured:
        print_verdict(report)
    assert "no divergence up to 0.01" in captured.get()
    # with a divergence, the LR itself
    report = _table_report(cnn_momentum())
    assert "| 1 |" in verdict_markdown(report)
    assert "no divergence" not in verdict_markdown(report)


def test_the_table_counts_every_status_and_reads_old_reports():
    report = _table_report(cnn_momentum())
    markdown = verdict_markdown(report)
    assert "lanes c/l/s/p/h/u/d" in markdown and "| 3/0/0/0/0/1/1 |" in markdown
    assert "0.316 spiked (unstable)" in markdown
    old = {"name": "t", "metric": "accuracy", "groups": [dict(report["groups"][0])]}
    old["groups"][0]["status_counts"] = {"converged": 3, "stagnated": 1, "unstable": 0,
                                         "diverged": 2}  # fmt: skip
    del old["groups"][0]["first_unstable_lr"]
    assert "| 3/0/1/0/0/0/2 |" in verdict_markdown(old)
    with console.capture() as captured:
        print_verdict(old)
    assert "3/0/1/0/0/0/2" in captured.get()


@pytest.mark.parametrize("status", ["too_high", "too_slow"])
def test_the_plots_mark_the_new_statuses_hollow(status):
    from sweeps.verdict.plots import STATUS_STYLE, goldilocks_figure

    g = {
        "optimizer": "adam", "schedule": "constant", "optimizer_args": {}, "schedule_args": {},
        "best_lr": 1e-2, "best_val_loss": 0.1, "zone": None, "lr_free": False,
        "curve": {"learning_rate": [1e-3, 1e-2, 1e-1], "val_loss": [0.5, 0.1, 0.6],
                  "val_loss_std": [0, 0, 0], "status": [status, "converged", status]},
    }  # fmt: skip
    fig = goldilocks_figure({"name": "t", "groups": [g], "lanes": []})
    lines = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() == status]
    assert lines and all(ln.get_markerfacecolor() == "none" for ln in lines)
    assert all(ln.get_marker() == STATUS_STYLE[status][0] for ln in lines)
