"""The CPU lane width is measured per structure and machine by the driver, cached for the
host, never measured by a trial, overridable, used by the trainer and reported."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import tiny_spec_dict

from models import CNNSpec, MLPSpec
from sweeps.core import lane_policy
from sweeps.core import lane_width as tuner
from sweeps.core.lane_width import LanePolicy
from sweeps.core.optimizers import OPTIMIZERS
from sweeps.core.population import train_population
from sweeps.core.program import Structure, make_hyperparams
from sweeps.pipeline import prepare, run_sweep
from sweeps.settings import Settings
from sweeps.spec import parse_spec

STRUCTURE = Structure(
    MLPSpec(name="mlp", hidden=[16]), "cross_entropy", "adam", "constant", 32, 20, 10
)


@pytest.fixture
def measuring(monkeypatch, tmp_path):
    """A policy with an empty cache of our own, measuring whatever the sweep's size, nothing
    measured in this process; one slice at a time unless a test asks for more."""
    monkeypatch.setattr(lane_policy, "_FIGURES", {})
    policy = LanePolicy(threads=1, cache_dir=tmp_path / "cache", min_lane_steps=0)
    return policy, tmp_path / "cache" / tuner.CACHE_FILE


@pytest.fixture
def timed(monkeypatch):
    """Injected timings (seconds per lane-step by width); the widths asked for, in order."""
    asked: list[int] = []
    times: dict[int, float] = {}

    def fake(structure, data, widths, threads=1):
        asked.extend(widths)
        return {w: times[w] for w in widths}

    monkeypatch.setattr(lane_policy, "time_widths", fake)
    return times, asked


def choose(policy, structure, data, n, **kw):
    return lane_policy.choose(policy, structure, data, n, **kw)


def _short(choice: dict) -> dict:
    return {k: choice[k] for k in ("width", "source")}


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
    policy, cache_file = measuring
    # real timings on this machine, two slices at a time
    first = choose(policy, STRUCTURE, iris, 8, measure=True, threads=2)
    assert first["source"] == "measured" and first["tune_s"] > 0
    measured = first["seconds_per_lane_step"]
    assert 1 in measured  # width 1 (the loop's own program) always measured
    assert all(v > 0 for v in measured.values())
    # the report's figures are the ones the choice was made on: the cheapest step
    cost = first["cost_per_step_s"]
    assert cost == {w: tuner.step_cost(8, w, t, 2) for w, t in measured.items()}
    assert cost[first["width"]] <= min(cost.values()) * (1 + tuner.TIE)
    (entry,) = json.loads(cache_file.read_text()).values()
    assert entry["machine"] == tuner.machine() and entry["threads"] == 2
    assert {int(w): t for w, t in entry["figures"].items()} == measured

    lane_policy._FIGURES.clear()  # a later sweep on this host
    monkeypatch.setattr(lane_policy, "time_widths", lambda *a: pytest.fail("measured again"))
    again = choose(policy, STRUCTURE, iris, 8, measure=True, threads=2)
    assert again["source"] == "cache" and again["width"] == first["width"]


def test_another_optimizer_shares_the_measurement_but_another_model_does_not(
    measuring, iris, timed
):
    policy, _ = measuring
    times, asked = timed
    times.update({1: 1.0, 4: 0.3, 8: 0.5, 16: 0.6})
    assert choose(policy, STRUCTURE, iris, 16, measure=True)["width"] == 4
    sgd = dataclasses.replace(STRUCTURE, optimizer="sgd", schedule="cosine")
    assert choose(policy, sgd, iris, 16, measure=True)["source"] == "cache"
    assert asked == [1, 4, 8, 16, 4]  # 4, the best of round one, timed again in round two
    wider = dataclasses.replace(STRUCTURE, model=MLPSpec(name="mlp", hidden=[32]))
    assert choose(policy, wider, iris, 16, measure=True)["source"] == "measured"
    assert asked == [1, 4, 8, 16, 4] * 2


def test_a_new_jax_version_measures_again(measuring, iris, timed, monkeypatch):
    import jax

    policy, _ = measuring
    times, asked = timed
    times.update({1: 1.0, 4: 0.3, 8: 0.5, 16: 0.6})
    choose(policy, STRUCTURE, iris, 16, measure=True)
    lane_policy._FIGURES.clear()
    monkeypatch.setattr(jax, "__version__", jax.__version__ + ".post1")
    assert _short(choose(policy, STRUCTURE, iris, 16)) == {"width": 8, "source": "default"}
    assert choose(policy, STRUCTURE, iris, 16, measure=True)["source"] == "measured"
    assert asked == [1, 4, 8, 16, 4] * 2


def test_another_thread_count_measures_again(measuring, iris, timed):
    policy, _ = measuring
    times, asked = timed
    times.update({1: 1.0, 4: 0.3, 8: 0.5, 16: 0.6})
    assert choose(policy, STRUCTURE, iris, 16, measure=True, threads=1)["source"] == "measured"
    assert _short(choose(policy, STRUCTURE, iris, 16, threads=2))["source"] == "default"
    assert choose(policy, STRUCTURE, iris, 16, measure=True, threads=2)["source"] == "measured"
    lane_policy._FIGURES.clear()
    assert choose(policy, STRUCTURE, iris, 16, threads=1)["source"] == "cache"
    assert choose(policy, STRUCTURE, iris, 16, threads=2)["source"] == "cache"
    assert asked == [1, 4, 8, 16, 4] * 2


def test_any_population_size_is_costed_from_what_was_measured(measuring, iris, timed):
    """Seconds per lane-step of a width do not depend on the population's size: a size whose
    widths were all timed is decided without measuring (the issue: one walk per size)."""
    policy, _ = measuring
    times, asked = timed
    times.update({1: 1.0, 4: 0.3, 8: 0.2, 16: 0.15, 32: 0.2, 64: 0.3})
    assert choose(policy, STRUCTURE, iris, 64, measure=True)["width"] == 16
    before = list(asked)
    eight = choose(policy, STRUCTURE, iris, 8, measure=True)  # widths 1, 4, 8: all known
    assert eight["source"] == "cache" and eight["width"] == 8 and asked == before
    lane_policy._FIGURES.clear()
    assert choose(policy, STRUCTURE, iris, 64)["width"] == 16  # from the host's cache


def test_a_trial_never_measures(measuring, iris, timed):
    """Nothing measured for this host (a cluster's other node): the default rule."""
    policy, _ = measuring
    assert _short(choose(policy, STRUCTURE, iris, 16)) == {"width": 8, "source": "default"}
    conv = dataclasses.replace(STRUCTURE, model=CNNSpec(name="cnn", channels=[2]))
    assert _short(choose(policy, conv, iris, 16)) == {"width": 1, "source": "default"}
    assert timed[1] == []


def test_a_short_sweep_is_not_worth_measuring(iris, timed, tmp_path, monkeypatch):
    monkeypatch.setattr(lane_policy, "_FIGURES", {})
    policy = LanePolicy(threads=1, cache_dir=tmp_path, min_lane_steps=10_000)
    choice = choose(policy, STRUCTURE, iris, 16, measure=True, lane_steps=9_000)
    assert _short(choice) == {"width": 8, "source": "default"}
    assert "not worth measuring: 9,000 lane-steps" in choice["reason"]
    assert timed[1] == []
    times, _ = timed
    times.update({1: 1.0, 4: 0.3, 8: 0.5, 16: 0.6})
    long = choose(policy, STRUCTURE, iris, 16, measure=True, lane_steps=20_000)
    assert long["source"] == "measured" and long["width"] == 4


def test_the_same_users_class_is_one_structure_whatever_object_it_is(iris, tmp_path):
    """A notebook cell run again defines its class again (another object, another `obj:`
    reference): the same code is the same structure, so what was measured still holds."""
    import importlib.util

    from models import imports
    from models.specs import ImportModelSpec

    (tmp_path / "netmod.py").write_text(
        "class Net:\n    def __call__(self, x):\n        return 4 * x\n"
    )
    (tmp_path / "other.py").write_text(
        "class Net:\n    def __call__(self, x):\n        return 8 * x\n"
    )

    def load(file, name):
        spec = importlib.util.spec_from_file_location(name, tmp_path / file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.Net

    refs = [imports.register_object(load(f, n)) for f, n in
            [("netmod.py", "netmod_a"), ("netmod.py", "netmod_b"), ("other.py", "other_a")]]  # fmt: skip
    assert len(set(refs)) == 3  # three objects, three references
    ids = [
        lane_policy.structure_id(
            dataclasses.replace(STRUCTURE, model=ImportModelSpec(import_=ref)), iris
        )
        for ref in refs
    ]
    assert ids[0] == ids[1] != ids[2]


def test_the_trainer_slices_at_the_width_it_is_given(iris):
    n = 5
    hp = make_hyperparams(
        np.geomspace(1e-3, 1e-1, n),
        {k: np.full(n, v) for k, v in OPTIMIZERS["adam"].defaults.items()},
        {},
    )
    points = list(train_population(STRUCTURE, iris, hp, np.zeros(n, np.int64), width=3))
    assert {p.width for p in points} == {3}
    assert len(points[-1].state) == 2  # 5 lanes at width 3: two slices


def test_tuning_off_gives_the_default_rule(iris, timed):
    choice = choose(LanePolicy(tune=False), STRUCTURE, iris, 16, measure=True)
    assert _short(choice) == {"width": 8, "source": "default"} and timed[1] == []


def test_a_setting_overrides_the_measurement(measuring, iris, timed):
    _, cache_file = measuring
    choice = choose(LanePolicy(cpu_width=3), STRUCTURE, iris, 16, measure=True)
    assert _short(choice) == {"width": 3, "source": "setting"}
    assert not cache_file.exists() and timed[1] == []


# ------------------------------------------------------------------ in a sweep
def _settings(tmp_path, **kw) -> Settings:
    base = Settings().model_dump()
    base.update(cpu_lane_width=None, cpu_threads=1, compile_cache=tmp_path / "cache", **kw)
    return Settings.model_construct(**base)


def test_the_driver_measures_before_training_and_the_report_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(lane_policy, "_FIGURES", {})
    raw = tiny_spec_dict(name="widths")
    raw["train"].update(steps=20, eval_every=10)
    spec = parse_spec(raw)
    settings = _settings(tmp_path, lane_width_min_lane_steps=0)
    seen = []
    report = run_sweep(
        prepare(spec), tmp_path / "out", executor="inline", track=False,
        on_progress=seen.append, settings=settings,
    )  # fmt: skip
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
    assert sorted(sources) == ["cache", "measured"]  # the optimizers share one measurement

    lane_policy._FIGURES.clear()
    again = run_sweep(
        prepare(spec), tmp_path / "again", executor="inline", track=False, settings=settings
    )
    assert again["timing"]["tune_s"] == 0  # read from the host's cache
    assert again["timing"]["lane_width"] == timing["lane_width"]
    assert {c["source"] for c in again["timing"]["lane_width_choice"].values()} == {"cache"}


def test_a_short_sweep_trains_at_once_and_the_report_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(lane_policy, "_FIGURES", {})
    monkeypatch.setattr(lane_policy, "time_widths", lambda *a: pytest.fail("measured"))
    raw = tiny_spec_dict(name="short")
    raw["train"].update(steps=20, eval_every=10)
    report = run_sweep(
        prepare(parse_spec(raw)), tmp_path / "out", executor="inline", track=False,
        settings=_settings(tmp_path),
    )  # fmt: skip
    assert report["timing"]["tune_s"] == 0
    for choice in report["timing"]["lane_width_choice"].values():
        assert choice["source"] == "default" and "not worth measuring" in choice["reason"]
