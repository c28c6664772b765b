"""`goldilocks ray up` keeps a local Ray head between commands; `run` joins it and says so;
`ray down` stops it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml
from conftest import tiny_spec_dict
from testlib import sweep_points

from sweeps.exec.raytune import local_head
from sweeps.folder import pid_alive

GOLDILOCKS = [sys.executable, "-m", "service.cli"]


def _cli(*args, env, timeout=300):
    return subprocess.run(
        [*GOLDILOCKS, *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout
    )


def _warm_trainers() -> list[int]:
    import psutil

    return [p.pid for p in psutil.process_iter(["cmdline"])
            if (p.info["cmdline"] or [""])[0].startswith("ray::WarmTrainer")]  # fmt: skip


def test_run_joins_the_kept_head_and_down_stops_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["GOLDILOCKS_STATE_DIR"] = str(tmp_path / "state")
    spec = tmp_path / "spec.yaml"
    raw = tiny_spec_dict(name="kept-head")
    raw["search"].update(optimizer=["adam"], learning_rate={"min": 1e-3, "max": 1.0, "num": 3})
    spec.write_text(yaml.safe_dump(raw))
    others = set(_warm_trainers())  # another head's on this machine, if any
    up = _cli("ray", "up", "--cpus", "2", env=env)
    assert up.returncode == 0, up.stderr
    head = local_head.find(tmp_path / "state")
    assert head is not None and head.address in up.stdout
    assert oct((tmp_path / "state" / local_head.HEAD_FILE).stat().st_mode)[-3:] == "600"
    try:
        run = _cli("run", spec, "--out", tmp_path / "out", "--tracking-uri",
                   f"sqlite:///{tmp_path}/mlflow.db", env=env)  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        assert f"joining the local head kept by `goldilocks ray up` ({head.address})" in " ".join(
            run.stdout.split()
        )
        report = json.loads((tmp_path / "out" / "report.json").read_text())
        assert report["executor"] == "ray" and len(report["lanes"]) == 3
        assert local_head.find(tmp_path / "state") == head  # still up for the next sweep
        # The next sweep is trained by the warm trainer the head kept (warm.py): every program
        # is in its memory already, the same numbers come out.
        again = _cli("run", spec, "--out", tmp_path / "again", "--tracking-uri",
                     f"sqlite:///{tmp_path}/mlflow.db", env=env)  # fmt: skip
        assert again.returncode == 0, again.stderr[-3000:]
        assert {p["compiles"] for p in sweep_points(tmp_path / "again")} == {0}
        second = json.loads((tmp_path / "again" / "report.json").read_text())
        assert [lane["best_val_loss"] for lane in second["lanes"]] == [
            lane["best_val_loss"] for lane in report["lanes"]
        ]
        trainers = set(_warm_trainers()) - others
        assert len(trainers) == 1, trainers
    finally:
        down = _cli("ray", "down", env=env)
    assert down.returncode == 0 and head.address in down.stdout
    assert local_head.find(tmp_path / "state") is None
    assert not pid_alive(head.pid)
    assert not any(pid_alive(pid) for pid in trainers)  # the warm trainer went with the head
    assert "none" in _cli("ray", "status", env=env).stdout
