"""The CPU lane width is measured per structure and machine by the driver, cached for the
host, never measured by a trial, overridable, used by the trainer and reported."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import tiny_spec_dict

from models import CNNSpec, MLPSpec
from sweeps.core import lane_width as tuner
from sweeps.core import population
from sweeps.core.optimizers import OPTIMIZERS
from sweeps.core.population import Structure, lane_choice, make_hyperparams, train_population
from sweeps.pipeline import prepare, run_sweep
from sweeps.settings import get_settings
from sweeps.spec import parse_spec

STRUCTURE = Structure(
    MLPSpec(name="mlp", hidden=[16]), "cross_entropy", "adam", "constant", 32, 20, 10
)


@pytest.fixture
def measuring(monkeypatch, tmp_path):
    """No width setting, an empty cache of our own, nothing measured in this process; one
    slice at a time unless a test asks for more (the injected timings mean one machine)."""
    monkeypatch.delenv("GOLDILOCKS_CPU_LANE_WIDTH", raising=False)
    monkeypatch.setenv("GOLDILOCKS_CPU_THREADS", "1")
    monkeypatch.delenv("GOLDILOCKS_TUNE_LANE_WIDTH", raising=False)  # on by default
    monkeypatch.setenv("GOLDILOCKS_COMPILE_CACHE", str(tmp_path / "cache"))
    get_settings.cache_clear()
    monkeypatch.setattr(population, "_CHOSEN", {})
    yield tmp_path / "cache" / tuner.CACHE_FILE
    get_settings.cache_clear()


@pytest.fixture
def timed(monkeypatch):
    """Injected timings (seconds per lane-step by width); the widths asked for, in order."""
    asked: list[int] = []
    times: dict[int, float] = {}

    def fake(structure, data, widths, threads=1):
        asked.extend(widths)
        return {w: times[w] for w in widths}

    monkeypatch.setattr(population, "_time_widths", fake)
    return times, asked


# ------------------------------------------------------------------ the choice itself
def _timer(times: dict[int, float], asked: list | None = None):
    def time_widths(widths):
        if asked is not None:
            asked.append(list(widths))
        return {w: times[w] for w in widths}

    return time_widths


def test_the_population_takes_the_width_that_makes_its_step_cheapest():
    # 64 lanes: every candidate divides them, so the cheapest per lane-step wins
    times = {1: 3.0, 4: 1.0, 8: 0.8, 16: 0.9, 32: 1.5, 64: 2.0}
    width, known = tuner.search(64, _timer(times))
    assert width == 8 and known == {w: times[w] for w in (1, 4, 8, 16, 32)}


def test_padding_counts_against_a_width():
    # 10 lanes: width 4 pads to 12 lane-steps (3 slices), width 5 runs exactly 10
    assert tuner.widths_for(10) == [1, 4, 5, 10]
    times = {1: 1.0, 4: 0.45, 5: 0.5, 10: 0.7}
    assert [round(tuner.step_cost(10, w, t), 2) for w, t in times.items()] == [10, 5.4, 5, 7]
    assert tuner.search(10, _timer(times))[0] == 5


def test_a_near_tie_goes_to_the_narrower_width():
    times = {1: 1.0, 4: 0.5, 8: 0.49, 16: 0.7, 32: 0.8, 64: 0.9}  # 8 beats 4 by 2 %
    assert tuner.search(64, _timer(times))[0] == 4


def test_the_walk_stops_two_widths_past_the_best_timing_the_best_again_each_round():
    asked = []
    convolution = {w: 1.0 + w for w in tuner.CANDIDATES}  # a vmapped convolution: wider is slower
    width, known = tuner.search(64, _timer(convolution, asked))
    assert width == 1 and set(known) == {1, 4, 8}
    # two compiled side by side, then only what the walk still needs, with the best again
    assert asked == [[1, 4], [8, 1]]


def test_each_width_is_compared_with_figures_of_its_own_round():
    """The machine slows down by half between rounds: width 8, timed in the slow round, is
    cheaper than width 4 timed again in that round, though not than 4's fast first figure."""
    rounds = iter([{1: 1.0, 4: 0.5}, {8: 0.6, 16: 0.9, 4: 0.75}, {32: 1.2, 8: 0.6}])
    width, _ = tuner.search(64, lambda widths: next(rounds))
    assert width == 8


def test_the_budget_ends_the_walk_with_the_best_so_far(monkeypatch):
    def slow(widths):
        import time

        time.sleep(0.05)
        return {w: 1.0 / w for w in widths}  # wider always cheaper: only the budget stops it

    monkeypatch.setattr(tuner, "BUDGET_S", 0.01)
    width, known = tuner.search(64, slow)
    assert width == 4 and set(known) == {1, 4}


def test_best_of_times_round_robin_and_keeps_each_ones_best_round(monkeypatch):
    order = []
    durations = {1: iter([0.03, 0.01, 0.02]), 4: iter([0.02, 0.05, 0.04])}
    now = [0.0]
    monkeypatch.setattr(tuner.time, "perf_counter", lambda: now[0])

    def run(w):
        def once():
            order.append(w)
            now[0] += next(durations[w])

        return once

    best = tuner.best_of({1: run(1), 4: run(4)}, min_s=0.0, budget_s=10)
    assert best == pytest.approx({1: 0.01, 4: 0.02}) and order == [1, 4, 1, 4, 1, 4]


def test_best_of_calls_a_short_run_until_it_has_taken_long_enough(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(tuner.time, "perf_counter", lambda: now[0])
    calls = []

    def once():
        calls.append(1)
        now[0] += 1 / 32

    best = tuner.best_of({1: once}, rounds=1, min_s=0.25)
    assert len(calls) == 8 and best[1] == pytest.approx(1 / 32)


def test_the_cost_counts_rounds_of_slices_trained_side_by_side():
    # 8 lanes on 2 threads: width 8 is one slice (a thread idle), width 4 two at once
    assert tuner.step_cost(8, 8, 1.0, threads=2) == 16
    assert tuner.step_cost(8, 4, 1.0, threads=2) == 8
    assert tuner.step_cost(10, 4, 1.0, threads=2) == 16  # 3 slices: two rounds
    assert tuner.step_cost(8, 4, 1.0) == 8 and tuner.step_cost(8, 8, 1.0) == 8  # one thread


def test_with_two_threads_the_search_keeps_two_slices_busy():
    times = {1: 1.0, 4: 0.5, 8: 0.45, 16: 0.4}  # per lane-step: wider is cheaper per lane
    assert tuner.search(16, _timer(times))[0] == 16
    assert tuner.search(16, _timer(times), threads=2)[0] == 8  # 16 would idle a thread


# ------------------------------------------------------------------ measured, then cached
def test_the_width_is_measured_once_then_read_from_the_hosts_cache(measuring, iris, monkeypatch):
    # real timings on this machine, two slices at a time
    first = lane_choice(STRUCTURE, iris, 8, measure=True, threads=2)
    assert first["source"] == "measured" and first["tune_s"] > 0
    measured = first["measured"]
    assert 1 in measured  # width 1 (the loop's own program) always measured
    assert all(v > 0 for v in measured.values())
    assert first["width"] == min(measured, key=lambda w: (tuner.step_cost(8, w, measured[w], 2), w))
    (entry,) = json.loads(measuring.read_text()).values()
    assert entry["machine"] == tuner.machine() and entry["threads"] == 2
    saved = entry["chosen"]["8"]
    assert saved["width"] == first["width"]
    assert {int(w): t for w, t in saved["measured"].items()} == measured

    population._CHOSEN.clear()  # a later sweep, or a Ray trial on this host
    monkeypatch.setattr(population, "_time_widths", lambda *a: pytest.fail("measured again"))
    again = lane_choice(STRUCTURE, iris, 8, measure=True, threads=2)
    assert again["source"] == "cache" and again["width"] == first["width"]


def test_another_optimizer_shares_the_measurement_but_another_model_does_not(
    measuring, iris, timed
):
    times, asked = timed
    times.update({1: 1.0, 4: 0.3, 8: 0.5, 16: 0.6})
    assert lane_choice(STRUCTURE, iris, 16, measure=True)["width"] == 4
    sgd = dataclasses.replace(STRUCTURE, optimizer="sgd", schedule="cosine")
    assert lane_choice(sgd, iris, 16, measure=True)["source"] == "cache"
    assert asked == [1, 4, 8, 16, 4]  # 4, the best of round one, timed again in round two
    wider = dataclasses.replace(STRUCTURE, model=MLPSpec(name="mlp", hidden=[32]))
    assert lane_choice(wider, iris, 16, measure=True)["source"] == "measured"
    assert asked == [1, 4, 8, 16, 4] * 2


def test_a_new_jax_version_measures_again(measuring, iris, timed, monkeypatch):
    import jax

    times, asked = timed
    times.update({1: 1.0, 4: 0.3, 8: 0.5, 16: 0.6})
    lane_choice(STRUCTURE, iris, 16, measure=True)
    population._CHOSEN.clear()
    monkeypatch.setattr(jax, "__version__", jax.__version__ + ".post1")
    assert lane_choice(STRUCTURE, iris, 16) == {"width": 8, "source": "default"}  # not theirs
    assert lane_choice(STRUCTURE, iris, 16, measure=True)["source"] == "measured"
    assert asked == [1, 4, 8, 16, 4] * 2


def test_another_thread_count_measures_again(measuring, iris, timed):
    times, asked = timed
    times.update({1: 1.0, 4: 0.3, 8: 0.5, 16: 0.6})
    assert lane_choice(STRUCTURE, iris, 16, measure=True, threads=1)["source"] == "measured"
    assert lane_choice(STRUCTURE, iris, 16, threads=2) == {"width": 8, "source": "default"}
    assert lane_choice(STRUCTURE, iris, 16, measure=True, threads=2)["source"] == "measured"
    population._CHOSEN.clear()
    assert lane_choice(STRUCTURE, iris, 16, threads=1)["source"] == "cache"
    assert lane_choice(STRUCTURE, iris, 16, threads=2)["source"] == "cache"
    assert asked == [1, 4, 8, 16, 4] * 2


def test_each_population_size_gets_its_own_walk_and_keeps_it(measuring, iris, timed):
    times, asked = timed
    times.update({1: 1.0, 4: 0.3, 8: 0.2, 16: 0.15, 32: 0.2, 64: 0.3})
    assert lane_choice(STRUCTURE, iris, 8, measure=True)["width"] == 8
    assert lane_choice(STRUCTURE, iris, 64, measure=True)["width"] == 16
    population._CHOSEN.clear()
    assert lane_choice(STRUCTURE, iris, 8)["width"] == 8
    assert lane_choice(STRUCTURE, iris, 64)["width"] == 16
    assert lane_choice(STRUCTURE, iris, 32) == {"width": 8, "source": "default"}


def test_a_trial_never_measures(measuring, iris, timed):
    """Nothing measured for this host (a cluster's other node): the default rule."""
    assert lane_choice(STRUCTURE, iris, 16) == {"width": 8, "source": "default"}
    conv = dataclasses.replace(STRUCTURE, model=CNNSpec(name="cnn", channels=[2]))
    assert lane_choice(conv, iris, 16) == {"width": 1, "source": "default"}
    assert timed[1] == []


def test_the_trainer_slices_at_the_chosen_width(measuring, iris, timed):
    times, _ = timed
    times.update({1: 1.0, 3: 0.3, 5: 0.5})  # 5 lanes train at width 1, 3 (padded to 6) or 5
    n = 5
    assert lane_choice(STRUCTURE, iris, n, measure=True)["width"] == 3
    hp = make_hyperparams(
        np.geomspace(1e-3, 1e-1, n),
        {k: np.full(n, v) for k, v in OPTIMIZERS["adam"].defaults.items()},
        {},
    )
    points = list(train_population(STRUCTURE, iris, hp, np.zeros(n, np.int64)))
    assert {p.width for p in points} == {3}
    assert len(points[-1].state) == 2  # 5 lanes at width 3: two slices


def test_tuning_off_gives_the_default_rule(measuring, monkeypatch, iris, timed):
    monkeypatch.setenv("GOLDILOCKS_TUNE_LANE_WIDTH", "0")
    get_settings.cache_clear()
    assert lane_choice(STRUCTURE, iris, 16, measure=True) == {"width": 8, "source": "default"}
    assert timed[1] == []


def test_a_setting_overrides_the_measurement(measuring, monkeypatch, iris, timed):
    monkeypatch.setenv("GOLDILOCKS_CPU_LANE_WIDTH", "3")
    get_settings.cache_clear()
    assert lane_choice(STRUCTURE, iris, 16, measure=True) == {"width": 3, "source": "setting"}
    assert not measuring.exists() and timed[1] == []


# ------------------------------------------------------------------ in a sweep
def test_the_driver_measures_before_training_and_the_report_says_so(measuring, tmp_path):
    raw = tiny_spec_dict(name="widths")
    raw["train"].update(steps=20, eval_every=10)
    spec = parse_spec(raw)
    seen = []
    report = run_sweep(
        prepare(spec), tmp_path / "out", executor="inline", track=False, on_progress=seen.append
    )
    # the progress says what happens while nothing trains yet, once, before the training
    assert [p.phase for p in seen if p.phase] == [
        "measuring the lane width for sgd-constant on this CPU"
    ]
    assert seen[0].phase and not seen[-1].phase and seen[-1].fraction == 1.0
    timing = report["timing"]
    assert set(timing["lane_width"]) == {lane["trial_id"] for lane in report["lanes"]}
    assert timing["tune_s"] > 0
    sources = []
    for pid, width in timing["lane_width"].items():
        optimizer = pid.split("-")[1]
        choice = timing["lane_width_choice"][f"{optimizer}-constant"]
        sources.append(choice["source"])
        assert width == choice["width"]
        widths = {int(w) for w in choice["seconds_per_lane_step"]}
        assert 1 in widths and widths <= set(tuner.widths_for(7))  # 7 LRs per population
    assert "cache" in sources  # the optimizers share one measurement

    again = run_sweep(prepare(spec), tmp_path / "again", executor="inline", track=False)
    assert again["timing"]["tune_s"] == 0  # read from the host's cache
    assert again["timing"]["lane_width"] == timing["lane_width"]
