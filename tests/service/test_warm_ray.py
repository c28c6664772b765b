"""The service's own Ray (service/warm_ray.py): one cluster for the service's lifetime, joined
by every sweep; a killed driver takes neither the service nor the cluster down."""

from __future__ import annotations

import json
import os
import signal

from svc_testlib import live_server, make_settings, service_spec, wait_for
from testlib import sweep_points


def _driver_pid(server, sweep_id: str) -> int | None:
    state = server.settings.sweeps_dir / sweep_id / "sweep.json"
    try:
        return json.loads(state.read_text()).get("pid")
    except (OSError, ValueError):
        return None


def test_two_sweeps_share_one_cluster_and_a_killed_driver_harms_neither(tmp_path):
    settings = make_settings(tmp_path, executor="ray", max_resume_attempts=1)
    with live_server(settings) as server, server.client() as api:
        ray = server.app.state.runner.ray
        first = api.post("/sweeps", json=service_spec("warm-1")).json()["id"]
        done = server.wait_status(first, timeout=300)
        assert done["status"] == "succeeded", done["error"]
        head_pid, address = ray.pid, ray.address
        assert ray.running and ray.starts == 1

        # The second sweep's driver is killed mid-sweep: the runner resumes it, on the same Ray.
        second = api.post("/sweeps", json=service_spec("warm-2", steps=240, eval_every=4)).json()
        folder = settings.sweeps_dir / second["id"]
        wait_for(lambda: (folder / "points.jsonl").exists() and sweep_points(folder), 240,
                 "the second sweep to train")  # fmt: skip
        os.kill(_driver_pid(server, second["id"]), signal.SIGKILL)
        assert api.get("/healthz").status_code == 200
        done = server.wait_status(second["id"], timeout=400)
        log = (folder / "driver.log").read_text()
        assert done["status"] == "succeeded", (done["error"], log[-3000:])
        assert "attempt 2" in log or log.count("resume") >= 1  # a second driver finished it

        # One cluster throughout: the same head process, address and node for every trial.
        assert (ray.pid, ray.address, ray.starts) == (head_pid, address, 1) and ray.running
        nodes = {p["node_id"] for p in sweep_points(settings.sweeps_dir / first)}
        nodes |= {p["node_id"] for p in sweep_points(folder)}
        assert len(nodes) == 1
        for sweep_id in (first, second["id"]):
            assert f"--ray-address {address}" in (settings.sweeps_dir / sweep_id / "driver.log"
                                                   ).read_text()  # fmt: skip
    assert not ray.running  # stopped with the service
