"""Fault: the sweep folder's disk fills up part-way through a sweep.

Injected at the one call every folder write goes through, `Path.write_text` (write_json_atomic's
tmp file for sweep.json, progress.json, plan.json, mlflow_state.json and report.json; spec.json;
verdict.md), for files under the sweep folder only: the failing write puts down half its bytes,
then raises OSError(ENOSPC), as a full disk does. MLflow's store lies outside the folder and
keeps working.

What must hold: the sweep ends failed (exit 1, "No space left on device", naming the file whose
write failed first), its MLflow runs end FAILED (none left RUNNING), no half-written file is
left in the folder, and what was logged before the fault is still there. While the disk stays
full, sweep.json cannot say failed: it stays whole at its last state, and once there is space
again `goldilocks resume` finishes the sweep on the same runs with no point logged twice.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

import pytest
from faultlib import (
    fault_spec,
    goldilocks,
    mlflow_runs,
    output,
    repeated_steps,
    run_cli_sweep,
)

from sweeps import folder as files

ENOSPC = os.strerror(errno.ENOSPC)  # "No space left on device"


class FullDisk:
    """Path.write_text under `folder` fails with ENOSPC from the first write `trigger` accepts
    on; with `stays`, every later write into the folder fails too (else only that one)."""

    def __init__(self, folder: Path, trigger, *, stays: bool):
        self.folder, self.trigger, self.stays = folder, trigger, stays
        self.full = False
        self.failed: list[str] = []  # the names of the writes refused, in order
        self._real = Path.write_text

    def install(self, mp: pytest.MonkeyPatch) -> None:
        disk = self

        def write_text(self, data, *args, **kwargs):
            path = Path(self)
            if disk.folder in path.parents and (disk.full or disk.trigger(path, data)):
                first = not disk.full
                disk.full = disk.stays
                disk.failed.append(path.name)
                if first:  # the write that hit the end of the disk got half its bytes down
                    disk._real(self, data[: len(data) // 2], *args, **kwargs)
                raise OSError(errno.ENOSPC, ENOSPC, str(path))
            return disk._real(self, data, *args, **kwargs)

        mp.setattr(Path, "write_text", write_text)


def is_tmp_of(name: str):
    return lambda path, data: path.name.startswith(f".{name}.")


def mid_training(path: Path, data: str) -> bool:
    """progress.json once some lanes have trained and others not (the first eval point)."""
    if not path.name.startswith(f".{files.PROGRESS}."):
        return False
    progress = json.loads(data)
    return 0 < progress["lane_steps_done"] < progress["lane_steps_total"]


def assert_no_half_files(folder: Path) -> None:
    left = [p.name for p in folder.rglob("*.tmp")]
    assert not left, f"half-written tmp files left: {left}"
    for path in folder.rglob("*.json"):
        json.loads(path.read_text())  # every visible JSON file is whole


def assert_runs_failed(runs: dict) -> None:
    assert {r["status"] for r in runs.values()} == {"FAILED"}, runs
    parent = [r for r in runs.values() if r["kind"] == "sweep"]
    assert len(parent) == 1 and ENOSPC in parent[0]["error"], parent


@pytest.mark.slow
def test_disk_full_mid_training_fails_the_sweep_and_resume_finishes_it(tmp_path, caplog):
    raw = fault_spec("disk-full")
    out = tmp_path / "sweep"
    disk = FullDisk(out, mid_training, stays=True)
    with pytest.MonkeyPatch.context() as mp, caplog.at_level(logging.ERROR):
        disk.install(mp)
        result, uri = run_cli_sweep(tmp_path, raw, out)

    said = output(result)
    assert result.exit_code == 1, said
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert disk.failed[0].startswith(f".{files.PROGRESS}.")  # it filled mid-training
    # the error the sweep met first, not the later one of recording it
    assert f"sweep failed: [Errno {errno.ENOSPC}] {ENOSPC}" in said and files.PROGRESS in said
    runs = mlflow_runs(uri, raw["experiment"])
    assert len(runs) == 4, runs  # parent + 3 lanes
    assert_runs_failed(runs)
    assert_no_half_files(out)
    logged = {k: r["steps"] for k, r in runs.items()}
    assert any(s.get("train_loss") == [10] for s in logged.values())  # the first eval point
    # sweep.json could not be rewritten: whole, at its last state, and the log says so
    assert json.loads((out / files.STATE).read_text())["status"] == "running"
    assert any("could not record that the sweep failed" in r.getMessage() for r in caplog.records)

    # space again: resume finishes it on the same runs
    resumed = goldilocks("resume", out)

    assert resumed.exit_code == 0, output(resumed)
    assert json.loads((out / files.STATE).read_text())["status"] == "succeeded"
    after = mlflow_runs(uri, raw["experiment"])
    assert set(after) == set(runs)  # the same runs, no second set
    assert {r["status"] for r in after.values()} == {"FINISHED"}
    assert not repeated_steps(after)  # nothing logged twice
    for run_id, steps in logged.items():  # nothing logged before the fault lost
        for key, got in steps.items():
            assert set(got) <= set(after[run_id]["steps"][key]), (run_id, key)
    assert_no_half_files(out)


def test_a_failed_report_write_ends_the_sweep_failed_and_says_so(tmp_path):
    raw = fault_spec("report-enospc")
    out = tmp_path / "sweep"
    disk = FullDisk(out, is_tmp_of(files.REPORT), stays=False)
    with pytest.MonkeyPatch.context() as mp:
        disk.install(mp)
        result, uri = run_cli_sweep(tmp_path, raw, out)

    said = output(result)
    assert result.exit_code == 1, said
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert len(disk.failed) == 1 and disk.failed[0].startswith(f".{files.REPORT}.")
    assert f"sweep failed: [Errno {errno.ENOSPC}] {ENOSPC}" in said and files.REPORT in said
    state = json.loads((out / files.STATE).read_text())
    assert state["status"] == "failed" and ENOSPC in state["error"], state
    assert not (out / files.REPORT).exists()  # no report rather than half of one
    runs = mlflow_runs(uri, raw["experiment"])
    assert len(runs) == 4, runs
    assert_runs_failed(runs)
    assert all(r["steps"]["train_loss"] == [10, 20] for r in runs.values() if r["kind"] == "lane")
    assert_no_half_files(out)
