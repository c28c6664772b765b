"""Sizing a population to a device's memory (sweeps/core/memory.py): the arithmetic against a
brute-force count, the analysis reader against the API's shapes, and the sizing of a real
population against XLA's own analysis of a program compiled at a width never probed."""

from __future__ import annotations

import types

import numpy as np
import pytest

from models import MLPSpec
from sweeps.core import memory
from sweeps.core.memory import MemoryModel, ProgramBytes, fit_model, lanes_that_fit
from sweeps.core.population import probe_programs
from sweeps.core.program import Structure


def brute_force(model: MemoryModel, usable: float, limit: int = 40_000) -> int:
    return max([n for n in range(1, limit) if model.bytes_for(n) <= usable], default=0)


@pytest.mark.parametrize(
    ("fixed", "per_program", "per_state", "cap", "budget"),
    [
        (100, 10, 3, 8, 1000),  # many slices, padded ones among them
        (100, 10, 3, 64, 500),  # one slice only
        (0, 7, 7, 5, 333),
        (1000, 10, 3, 8, 900),  # not even one lane
        (50, 40, 1, 16, 20_000),
    ],
)
def test_lanes_that_fit_is_the_largest_count_that_fits(fixed, per_program, per_state, cap, budget):
    model = MemoryModel(fixed, per_program, per_state, cap)
    got = lanes_that_fit(model, budget, headroom=0.1)
    assert got == brute_force(model, budget * 0.9)
    if got:
        assert model.bytes_for(got) <= budget * 0.9


def test_bytes_for_counts_one_slice_in_a_program_and_the_others_resident():
    model = MemoryModel(fixed=100, per_lane_program=10, per_lane_state=3, width_cap=8)
    assert model.bytes_for(8) == 100 + 80
    assert model.bytes_for(16) == 100 + 80 + 3 * 8
    assert model.bytes_for(9) == 100 + 50 + 3 * 5  # 5 + 5: the second slice padded by one


def test_lanes_that_fit_refuses_bad_headroom_and_a_free_state():
    with pytest.raises(ValueError, match="headroom"):
        lanes_that_fit(MemoryModel(0, 1, 1, 4), 100, headroom=1.0)
    with pytest.raises(ValueError, match="per_lane_state"):
        lanes_that_fit(MemoryModel(0, 1, 0, 4), 100, headroom=0.0)


def test_fit_model_recovers_a_line_and_keeps_the_slope_above_the_state():
    m = fit_model({16: 1000 + 16 * 50, 32: 1000 + 32 * 50, 64: 1000 + 64 * 50}, 20, 1024)
    assert (m.fixed, m.per_lane_program, m.per_lane_state) == pytest.approx((1000, 50, 20))
    flat = fit_model({16: 500, 32: 500}, 8, 64)  # temps that did not grow: a lane still costs
    assert flat.per_lane_program == 8
    with pytest.raises(ValueError, match="probes"):
        fit_model({16: 500}, 8, 64)


class _Stats:
    argument_size_in_bytes = 100
    output_size_in_bytes = 40
    alias_size_in_bytes = 30
    temp_size_in_bytes = 7


def _compiled(result=None, error=None):
    def analysis():
        if error:
            raise error
        return result

    return types.SimpleNamespace(memory_analysis=analysis)


def test_program_bytes_reads_every_shape_the_api_has_had():
    assert memory.program_bytes(_compiled(_Stats())).total == 100 + 40 - 30 + 7
    assert memory.program_bytes(_compiled([_Stats()])).total == 117  # one per device
    as_dict = {"argument_size_in_bytes": 10, "temp_size_in_bytes": 5, "peak_memory_in_bytes": 99}
    assert memory.program_bytes(_compiled(as_dict)) == ProgramBytes(10, 0, 0, 5, 0, 99)
    assert memory.program_bytes(_compiled(None)) is None
    assert memory.program_bytes(_compiled(error=NotImplementedError())) is None
    assert memory.program_bytes(object()) is None
    assert memory.program_bytes(_compiled(types.SimpleNamespace())) is None  # all fields absent


def test_device_budget_reads_memory_stats_or_says_none():
    gpu = types.SimpleNamespace(memory_stats=lambda: {"bytes_limit": 1000, "bytes_in_use": 250})
    assert memory.device_budget(gpu) == {"limit": 1000, "in_use": 250, "free": 750}
    assert memory.device_budget(types.SimpleNamespace(memory_stats=lambda: None)) is None
    assert memory.device_budget(object()) is None


def test_size_population_predicts_a_program_it_never_compiled(digits):
    """Probes at 4 and 8 lanes predict the 24-lane program's bytes, as XLA's analysis of that
    program (compiled independently) gives them; the count it returns fits its budget."""
    structure = Structure(MLPSpec(name="mlp", hidden=[32]), "cross_entropy", "adam", "constant",
                          32, 20, 10)  # fmt: skip
    budget = 4 * 2**20
    sized = memory.size_population(structure, digits, budget, probes=(4, 8), width_cap=64)
    assert sized["source"] == "memory_analysis"
    model = MemoryModel(**sized["model"])
    programs, lane_bytes = probe_programs(structure, digits, 24)
    actual = max(memory.program_bytes(p).total for p in programs)
    assert model.bytes_for(24) == pytest.approx(actual, rel=0.10)
    # One lane's state: the MLP's parameters and Adam's two moments, float32, and more.
    params = (64 * 32 + 32) + (32 * 10 + 10)
    assert 3 * 4 * params <= lane_bytes <= 3 * 4 * params + 256
    n = sized["lanes"]
    assert n > 24 and sized["predicted_bytes"] <= budget * 0.9 < model.bytes_for(n + 1)
    assert sized["width"] == min(n, 64) or n > 64
    assert np.isfinite(sized["predicted_bytes"])
