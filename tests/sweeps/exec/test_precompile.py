"""Programs compiled ahead in the driver: trials load them and train exactly as if they had
compiled them, and nothing unsafe (another host, a GPU, a cluster) ever gets them."""

from __future__ import annotations

import dataclasses
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_spec_dict

from sweeps.core import program
from sweeps.core.population import Timing
from sweeps.exec.precompile import ProgramsFile, compile_programs, install_programs
from sweeps.exec.raytune.cluster import RayTarget, compile_ahead
from sweeps.exec.trial import run_trial
from sweeps.pipeline import prepare
from sweeps.spec import parse_spec


@pytest.fixture
def prepared():
    # Two optimizers (two structures) and a lane count that splits into slices.
    spec = tiny_spec_dict(
        search={"learning_rate": {"min": 1e-3, "max": 1.0, "num": 11}, "optimizer": ["sgd", "adam"]}
    )
    return prepare(parse_spec(spec))


@pytest.fixture
def fresh_programs(monkeypatch):
    """An empty program cache, as in a new trial process."""
    monkeypatch.setattr(program, "_PROGRAMS", {})


def _train(prepared, pop) -> tuple[list, Timing]:
    timing = Timing()
    points = list(run_trial(prepared.spec, pop, prepared.data, timing=timing))
    return points, timing


def _same_points(a, b) -> None:
    assert [p.step for p in a] == [p.step for p in b]
    for pa, pb in zip(a, b, strict=True):
        np.testing.assert_array_equal(pa.val_loss, pb.val_loss)
        np.testing.assert_array_equal(pa.train_loss, pb.train_loss)
        np.testing.assert_array_equal(pa.diverged_at, pb.diverged_at)


def test_a_trial_with_precompiled_programs_compiles_nothing_and_trains_the_same(
    prepared, monkeypatch
):
    monkeypatch.setattr(program, "_PROGRAMS", {})
    reference = {p.id: _train(prepared, p) for p in prepared.populations}
    assert all(timing.compiles == 3 for _, timing in reference.values())  # init, eval, chunk

    programs = compile_programs(prepared.spec, prepared.data, prepared.populations)
    assert len(programs.by_structure) == 2  # sgd and adam: one set of programs each
    monkeypatch.setattr(program, "_PROGRAMS", {})  # a new trial process
    assert install_programs(programs, prepared.data) == 6
    for pop in prepared.populations:
        points, timing = _train(prepared, pop)
        assert timing.compiles == 0
        _same_points(points, reference[pop.id][0])


def test_programs_compiled_on_another_host_are_not_loaded(prepared, fresh_programs):
    programs = compile_programs(prepared.spec, prepared.data, prepared.populations[:1])
    program._PROGRAMS.clear()
    elsewhere = dataclasses.replace(programs, host="another-host")
    assert install_programs(elsewhere, prepared.data) == 0
    _, timing = _train(prepared, prepared.populations[0])
    assert timing.compiles == 3  # it compiled for itself, and trained


def _ahead_args(prepared):
    return prepared.spec, prepared.data, prepared.populations


def test_a_stopped_compile_ahead_still_hands_over_the_first_trials_programs(
    prepared, fresh_programs
):
    import threading

    stop = threading.Event()
    stop.set()  # Ray was up before anything was compiled
    programs = compile_programs(prepared.spec, prepared.data, prepared.populations, stop)
    assert len(programs.by_structure) == 1
    program._PROGRAMS.clear()
    assert install_programs(programs, prepared.data) == 3
    assert _train(prepared, prepared.populations[0])[1].compiles == 0


@pytest.mark.parametrize(
    ("change", "address"),
    [
        ({"resources": {"gpus_per_trial": 0.5}}, None),  # trials on a GPU: not our CPU code
        ({}, "127.0.0.1:6379"),  # a cluster: trials run on other machines
        ({"search": {"method": "tpe", "num_samples": 2, "optimizer": ["adam"]}}, None),
    ],
)
def test_nothing_is_compiled_ahead_where_trials_could_not_use_it(change, address, tmp_path):
    prepared = prepare(parse_spec(tiny_spec_dict(**change)))
    assert compile_ahead(*_ahead_args(prepared), tmp_path, RayTarget(address=address)) is None


def test_trials_read_the_programs_the_driver_writes_while_they_start(
    prepared, fresh_programs, monkeypatch, tmp_path
):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ahead = compile_ahead(*_ahead_args(prepared), tmp_path)
    handle = ahead.take()  # does not wait: the trial will
    while not Path(handle.path).exists():  # (here the "trial" shares the driver's process)
        time.sleep(0.05)
    program._PROGRAMS.clear()  # the trial's process
    assert install_programs(handle, prepared.data) >= 3
    assert _train(prepared, prepared.populations[0])[1].compiles == 0
    programs = ahead.close()
    assert programs.compile_s > 0 and not Path(handle.path).exists()  # no litter


def test_a_trial_compiles_for_itself_when_the_programs_never_come(
    prepared, fresh_programs, tmp_path
):
    import jax

    never = ProgramsFile(str(tmp_path / "never.pkl"), socket.gethostname(), jax.__version__)
    assert install_programs(never, prepared.data, wait_s=0.2) == 0
    assert _train(prepared, prepared.populations[0])[1].compiles == 3


def test_compile_ahead_can_be_switched_off(prepared, tmp_path):
    assert compile_ahead(*_ahead_args(prepared), tmp_path, RayTarget(precompile=False)) is None


def test_nothing_is_compiled_ahead_where_the_warm_trainer_compiles(prepared, tmp_path):
    # one trial per host: the warm trainer compiles while Tune sets the trial up
    assert compile_ahead(*_ahead_args(prepared), tmp_path, RayTarget(warm_trainer=True)) is None


def test_trials_that_train_themselves_still_get_programs_compiled_ahead(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    asha = prepare(parse_spec(tiny_spec_dict(scheduler={"name": "asha"})))  # one per population
    ahead = compile_ahead(*_ahead_args(asha), tmp_path, RayTarget(warm_trainer=True))
    assert ahead is not None
    ahead.discard()
    ahead.close()


def test_a_discarded_compile_ahead_leaves_nothing_behind(prepared, monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ahead = compile_ahead(*_ahead_args(prepared), tmp_path)
    ahead.discard()  # e.g. Ray failed to start: no trial will ever read the programs
    ahead._thread.join()
    assert list(tmp_path.iterdir()) == []


def test_trials_find_the_programs_of_a_sweep_folder_given_as_a_relative_path(
    prepared, fresh_programs, monkeypatch, tmp_path
):
    """`goldilocks run spec --out runs/demo`: Ray Tune runs each trial in its own working
    directory, so the handle must not be relative to the driver's."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.chdir(tmp_path)
    Path("runs/demo").mkdir(parents=True)
    ahead = compile_ahead(*_ahead_args(prepared), Path("runs/demo"))
    handle = ahead.take()
    assert Path(handle.path) == tmp_path / "runs" / "demo" / "programs.pkl"
    while not Path(handle.path).exists():
        time.sleep(0.05)
    (tmp_path / "trial").mkdir()
    monkeypatch.chdir(tmp_path / "trial")  # where a trial runs
    program._PROGRAMS.clear()
    assert install_programs(handle, prepared.data, wait_s=1) >= 3
    ahead.close()
