"""A standby driver's sweep against a tracking server that dies ends failed in about the
documented 30 s (MLflow's HTTP retries applied after the hand-off), not MLflow's minutes."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import yaml
from conftest import tiny_spec_dict
from mlflow_server import start_mlflow_server

from service.drivers import driver_env
from service.standby import Standby

MLFLOW_VARS = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
               "MLFLOW_HTTP_REQUEST_TIMEOUT")  # fmt: skip


@pytest.mark.manual  # ~45 s; tests/sweeps/tracking/test_tracking.py replays the standby's
# import-then-environment sequence in seconds on every run
def test_a_standby_sweep_fails_in_about_30_s_when_its_tracking_server_dies(tmp_path):
    # the service's environment never had MLflow's variables (the bug: the standby set them
    # at import time, then replaced its environment with this one)
    env = {k: v for k, v in driver_env().items() if k not in MLFLOW_VARS}
    spec = tiny_spec_dict(name="dies")
    spec["train"].update(steps=400_000, eval_every=2000)  # long enough to outlive the server
    spec["search"]["optimizer"] = ["adam"]
    folder = tmp_path / "sweep"
    folder.mkdir()
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    with start_mlflow_server(f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "art") as url:
        standby = Standby.spawn(env, tmp_path / "data")
        args = ["run", str(tmp_path / "spec.yaml"), "--out", str(folder), "--executor", "inline",
                "--tracking-uri", url]  # fmt: skip
        proc = standby.assign(args, folder, env)
        deadline = time.monotonic() + 180
        while not (folder / "mlflow_state.json").exists():  # its runs are on the server
            assert proc.poll() is None, (folder / "driver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the sweep never reached MLflow"
            time.sleep(0.2)
        time.sleep(1.0)
    died = time.monotonic()  # the server is gone (its process group terminated)
    try:
        code = proc.wait(timeout=150)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    took = time.monotonic() - died
    state = json.loads((folder / "sweep.json").read_text())
    assert code != 0 and state["status"] == "failed", state
    # 5 retries with backoff 1, 2, 4, 8, 16 s: ~31 s (MLflow's own: 7 retries, over 4 min)
    assert took < 75, f"the sweep took {took:.0f} s to fail after its server died"
