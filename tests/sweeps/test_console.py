"""What the terminal shows: the progress line counts lane-steps, counts read as English, and
the verdict table says when the winner is one seed of several."""

from __future__ import annotations

from sweeps.console import console, plural, print_verdict, progress_text
from sweeps.stream import Progress


def test_progress_counts_lane_steps_so_a_one_trial_sweep_moves():
    p = Progress(lane_steps_done=1200, lane_steps_total=3000, trials_total=1, trials_running=1)
    assert p.fraction == 0.4
    assert progress_text(p) == "1,200/3,000 lane-steps · trials 0/1, 1 running"


def test_counts_read_as_english():
    assert plural(1, "population") == "1 population"
    assert plural(2, "population") == "2 populations"
    assert plural(0, "lane") == "0 lanes"


def _report(seeds_at_lr: int, erratic: list[float]) -> dict:
    group = {
        "rank": 1, "optimizer": "adam", "schedule": "constant", "best_lr": 0.001,
        "zone": {"low": 0.0005, "high": 0.002}, "max_stable_lr": 0.01, "min_diverged_lr": 0.1,
        "edge": None, "best_val_loss": 0.1, "best_val_metric": 0.97, "lr_free": False,
        "status_counts": {"converged": 3, "stagnated": 1, "unstable": 0, "diverged": 2},
        "erratic_above_edge": erratic,
    }  # fmt: skip
    winner = {
        "optimizer": "adam", "schedule": "constant", "learning_rate": 0.001, "seed": 2,
        "best_val_loss": 0.09, "val_metric": 0.975, "seeds_at_lr": seeds_at_lr,
    }  # fmt: skip
    return {"name": "t", "metric": "accuracy", "groups": [group], "winner": winner}


def test_the_winner_line_says_it_is_the_best_seed_when_the_table_averages():
    with console.capture() as captured:
        print_verdict(_report(3, [1.0]))
    text = captured.get()
    assert "best of 3 seeds; the table shows their mean" in text
    assert "1 ended finite above the stability edge (0.1)" in text
    with console.capture() as captured:
        print_verdict(_report(1, []))
    assert "best of" not in captured.get() and "above the stability edge" not in captured.get()
