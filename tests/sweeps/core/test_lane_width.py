"""The CPU lane width is measured per structure and machine, cached for the host, overridable,
used by the trainer and reported."""

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
    """No width setting, an empty cache of our own, no choice remembered in this process."""
    monkeypatch.delenv("GOLDILOCKS_CPU_LANE_WIDTH", raising=False)
    monkeypatch.setenv("GOLDILOCKS_TUNE_LANE_WIDTH", "1")
    monkeypatch.setenv("GOLDILOCKS_COMPILE_CACHE", str(tmp_path / "cache"))
    get_settings.cache_clear()
    monkeypatch.setattr(population, "_CHOICES", {})
    yield tmp_path / "cache" / tuner.CACHE_FILE
    get_settings.cache_clear()


def test_the_fastest_candidate_wins_and_ties_go_narrower():
    times = {1: 3.0, 2: 2.0, 4: 1.0, 8: 1.0, 16: 1.5}
    choice = tuner.choose(times.__getitem__, candidates=tuple(times))
    assert choice["width"] == 4 and choice["measured"] == times


def test_the_width_is_measured_once_then_read_from_the_hosts_cache(measuring, iris):
    timed = []
    real = population._seconds_per_lane_step

    def spy(structure, data, width):
        timed.append(width)
        return real(structure, data, width)

    population._seconds_per_lane_step = spy
    try:
        first = lane_choice(STRUCTURE, iris)
    finally:
        population._seconds_per_lane_step = real
    assert timed == list(tuner.CANDIDATES)  # width 1 (the loop's program) always included
    assert first["source"] == "measured" and first["width"] in tuner.CANDIDATES
    measured = first["measured"]
    assert first["width"] == min(measured, key=lambda w: (measured[w], w))
    assert all(v > 0 for v in measured.values())
    saved = json.loads(measuring.read_text())
    (entry,) = saved.values()
    assert entry["width"] == first["width"] and entry["machine"] == tuner.machine()

    population._CHOICES.clear()  # a later sweep, or a Ray trial on this host
    population._seconds_per_lane_step = lambda *a: pytest.fail("measured again")
    try:
        again = lane_choice(STRUCTURE, iris)
    finally:
        population._seconds_per_lane_step = real
    assert again["source"] == "cache" and again["width"] == first["width"]


def test_the_trainer_slices_at_the_chosen_width(measuring, iris, monkeypatch):
    monkeypatch.setattr(population, "_CHOICES", {})
    monkeypatch.setattr(population, "_seconds_per_lane_step", lambda s, d, w: abs(w - 2) + 1.0)
    n = 5
    hp = make_hyperparams(
        np.geomspace(1e-3, 1e-1, n),
        {k: np.full(n, v) for k, v in OPTIMIZERS["adam"].defaults.items()},
        {},
    )
    points = list(train_population(STRUCTURE, iris, hp, np.zeros(n, np.int64)))
    assert {p.width for p in points} == {population.lane_width(n, 2)} == {2}
    assert len(points[-1].state) == 3  # 5 lanes at width 2: three slices


def test_without_tuning_the_width_is_the_default(monkeypatch, iris, tmp_path):
    monkeypatch.delenv("GOLDILOCKS_CPU_LANE_WIDTH", raising=False)
    monkeypatch.delenv("GOLDILOCKS_TUNE_LANE_WIDTH", raising=False)
    monkeypatch.setattr(population, "_CHOICES", {})
    get_settings.cache_clear()
    try:
        assert lane_choice(STRUCTURE, iris) == {"width": 8, "source": "default"}
        # convolutions and attention run one lane at a time on a CPU unless told otherwise
        conv = dataclasses.replace(STRUCTURE, model=CNNSpec(name="cnn", channels=[2]))
        assert lane_choice(conv, iris) == {"width": 1, "source": "default"}
    finally:
        get_settings.cache_clear()


def test_a_setting_overrides_the_measurement(monkeypatch, iris, tmp_path):
    monkeypatch.setenv("GOLDILOCKS_CPU_LANE_WIDTH", "3")
    monkeypatch.setenv("GOLDILOCKS_COMPILE_CACHE", str(tmp_path))
    get_settings.cache_clear()
    try:
        assert lane_choice(STRUCTURE, iris) == {"width": 3, "source": "setting"}
        assert not (tmp_path / tuner.CACHE_FILE).exists()
    finally:
        get_settings.cache_clear()


def test_a_sweep_reports_its_widths_and_the_measured_alternatives(measuring, tmp_path):
    raw = tiny_spec_dict(name="widths")
    raw["train"].update(steps=20, eval_every=10)
    spec = parse_spec(raw)
    report = run_sweep(prepare(spec), tmp_path / "out", executor="inline", track=False)
    timing = report["timing"]
    assert set(timing["lane_width"]) == {lane["trial_id"] for lane in report["lanes"]}
    assert timing["tune_s"] > 0
    for pid, width in timing["lane_width"].items():
        optimizer = pid.split("-")[1]
        choice = timing["lane_width_choice"][f"{optimizer}-constant"]
        assert choice["source"] == "measured"
        assert set(choice["seconds_per_lane_step"]) == {str(w) for w in tuner.CANDIDATES}
        assert width == population.lane_width(7, choice["width"])  # 7 LRs per population
