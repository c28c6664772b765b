"""Fault: a sweep folder's state file damaged (half written, emptied, garbage, not an object)
before `goldilocks resume`.

One real sweep (tpe, so every state file exists: sweep.json, spec.json, mlflow_state.json,
plan.json), stopped by Ctrl-C in its second trial. Each case damages one file of a copy and
resumes it. What must hold: exit 2 (bad input: the folder) with a message naming the file,
never a traceback; nothing written into the folder; the MLflow runs as they were (none
deleted, none added, none re-opened). The undamaged copy resumes to the end on the same runs,
with every point logged before the stop still there and none logged twice.
"""

from __future__ import annotations

import json
import shutil

import pytest
from faultlib import (
    fault_spec,
    folder_bytes,
    goldilocks,
    mlflow_runs,
    output,
    repeated_steps,
    run_cli_sweep,
)

from sweeps import folder as files

DAMAGE = {
    "half": lambda b: b[: len(b) // 2],  # the write of a process that died mid-file
    "empty": lambda b: b"",  # created, never written
    "garbage": lambda b: b"\x00\xff\xfe\x00 {{ not json",  # not even UTF-8
    "list": lambda b: b"[1, 2, 3]\n",  # JSON, but not the object the folder holds
}
FILES = (files.STATE, files.SPEC, files.MLFLOW_STATE, files.PLAN)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """(folder, tracking URI, experiment): a tpe sweep stopped by Ctrl-C after the first eval
    point of its second trial (the first trial scored, the third never asked)."""
    from sweeps.exec import inline

    tmp = tmp_path_factory.mktemp("fault-folder")
    raw = fault_spec("damaged", method="tpe")
    out = tmp / "sweep"
    real = inline.run_trial
    started = []

    def ctrl_c_in_the_second_trial(spec, pop, data, **kwargs):
        started.append(pop.id)
        for i, point in enumerate(real(spec, pop, data, **kwargs)):
            yield point
            if len(started) == 2 and i == 0:
                raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(inline, "run_trial", ctrl_c_in_the_second_trial)
        result, uri = run_cli_sweep(tmp, raw, out)
    assert result.exit_code == 130, output(result)
    for name in FILES:
        assert (out / name).is_file(), name
    assert json.loads((out / files.STATE).read_text())["status"] == "interrupted"
    plan = json.loads((out / files.PLAN).read_text())
    assert [h["score"] is not None for h in plan["searcher"]] == [True, False]
    runs = mlflow_runs(uri, raw["experiment"])
    assert sorted(r["status"] for r in runs.values()) == ["KILLED"] * 3  # parent + 2 lanes
    return out, uri, raw["experiment"]


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("name", FILES)
def test_resume_refuses_a_damaged_state_file_and_changes_nothing(
    interrupted, tmp_path, name, damage
):
    source, uri, experiment = interrupted
    folder = tmp_path / "sweep"
    shutil.copytree(source, folder)
    path = folder / name
    path.write_bytes(DAMAGE[damage](path.read_bytes()))
    files_before, runs_before = folder_bytes(folder), mlflow_runs(uri, experiment)

    result = goldilocks("resume", folder)

    said = output(result)
    assert result.exit_code == 2, said
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # no crash
    assert "Traceback" not in said
    assert f"error: sweep_dir: {name} is not" in said, said
    what = "a JSON object" if damage == "list" else "valid JSON"
    assert f"{name} is not {what}" in said and "the folder cannot be resumed" in said, said
    assert folder_bytes(folder) == files_before  # nothing written, nothing removed
    assert mlflow_runs(uri, experiment) == runs_before  # none deleted, added or re-opened


def test_the_undamaged_folder_resumes_on_the_same_runs(interrupted, tmp_path):
    source, uri, experiment = interrupted
    folder = tmp_path / "sweep"
    shutil.copytree(source, folder)
    runs_before = mlflow_runs(uri, experiment)

    result = goldilocks("resume", folder)

    assert result.exit_code == 0, output(result)
    assert json.loads((folder / files.STATE).read_text())["status"] == "succeeded"
    report = json.loads((folder / files.REPORT).read_text())
    assert len(report["lanes"]) == 3  # the scored trial, the stopped one and the last
    runs = mlflow_runs(uri, experiment)
    assert set(runs_before) < set(runs) and len(runs) == 4  # the same runs, + the 3rd lane's
    assert {r["status"] for r in runs.values()} == {"FINISHED"}
    assert not repeated_steps(runs)  # no point logged twice
    for run_id, run in runs_before.items():  # every point logged before the stop is there
        for key, steps in run["steps"].items():
            assert set(steps) <= set(runs[run_id]["steps"][key]), (run_id, key)
    lanes = [r for r in runs.values() if r["kind"] == "lane"]
    assert all(r["steps"]["train_loss"] == [10, 20] for r in lanes), lanes
