"""`kill -9` of the service mid-sweep, then a restart: the running sweep is resumed to a true
end with exactly one MLflow run per lane, and a queued sweep is still queued."""

from __future__ import annotations

import json

import httpx
from svc_testlib import ServiceProcess, service_spec, sweep_runs, tracking_client, wait_for

from service.drivers import is_driver_alive


def test_kill_9_mid_sweep_then_restart_resumes_without_duplicate_runs(tmp_path):
    mlflow = tracking_client()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    service = ServiceProcess(data_dir).start()
    try:
        api = httpx.Client(base_url=service.url, timeout=60)
        # about 8 s of training after start-up: long enough to be killed in the middle
        running = api.post("/sweeps", json=service_spec("crash", steps=150_000, eval_every=3_000))
        waiting = api.post("/sweeps", json=service_spec("waits"))
        assert running.status_code == waiting.status_code == 201
        sid, waiting_id = running.json()["id"], waiting.json()["id"]
        folder = data_dir.resolve() / "sweeps" / sid

        def training() -> bool:
            p = api.get(f"/sweeps/{sid}").json()["progress"] or {}
            return 0 < p.get("lane_steps_done", 0) < p.get("lane_steps_total", 0)

        wait_for(training, 240, "the sweep to be mid-training", every=0.2)
        service.kill9()

        # The kernel tells the driver its service died (PR_SET_PDEATHSIG): it stops gracefully,
        # as if cancelled: folder "interrupted", MLflow runs KILLED, process gone.
        driver_pid = json.loads((folder / "sweep.json").read_text())["pid"]
        gone = lambda: not is_driver_alive(driver_pid, sid, folder)  # noqa: E731
        wait_for(gone, 90, "the orphaned driver to exit")
        log = (folder / "driver.log").read_text()
        assert json.loads((folder / "sweep.json").read_text())["status"] == "interrupted", log
        state = json.loads((folder / "mlflow_state.json").read_text())
        assert mlflow.get_run(state["parent_run_id"]).info.status == "KILLED"

        service = ServiceProcess(data_dir).start()  # same data dir, same job store
        api = httpx.Client(base_url=service.url, timeout=60)
        assert api.get(f"/sweeps/{waiting_id}").json()["status"] == "queued"
        assert api.post(f"/sweeps/{waiting_id}/cancel").json()["status"] == "cancelled"

        sweep = wait_for(
            lambda: (s := api.get(f"/sweeps/{sid}").json())["status"] != "running" and s,
            300,
            "the resumed sweep to end",
            every=0.5,
        )
        assert sweep["status"] == "succeeded", (sweep, service.log.read_text()[-3000:])
        assert sweep["attempts"] == 2
        assert sweep["progress"]["fraction"] == 1.0
        report = api.get(f"/sweeps/{sid}/report").json()
        assert report["sweep_id"] == sid and len(report["lanes"]) == 3

        lanes = sweep_runs(mlflow, sweep)
        assert len(lanes) == 3, [r.info.run_id for r in lanes]  # reused, not duplicated
        assert {r.info.status for r in lanes} == {"FINISHED"}
        assert {r.info.run_id for r in lanes} == set(state["runs"].values())
        assert sorted(r.data.tags["goldilocks.lane"] for r in lanes) == ["0", "1", "2"]
        parents = sweep_runs(mlflow, sweep, kind="sweep")
        assert [(p.info.run_id, p.info.status) for p in parents] == [
            (state["parent_run_id"], "FINISHED")
        ]
        # no step was logged twice across the two attempts
        history = mlflow.get_metric_history(lanes[0].info.run_id, "train_loss")
        steps = [m.step for m in history]
        assert len(steps) == len(set(steps)) == 150_000 // 3_000
    finally:
        service.stop()
