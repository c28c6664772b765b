"""The happy path with the default executor: the driver runs the sweep as Ray Tune trials on a
real local Ray, logged to MLflow, served over HTTP."""

from __future__ import annotations

from svc_testlib import live_server, make_settings, service_spec, sweep_runs, tracking_client


def test_ray_sweep_end_to_end_over_http(tmp_path):
    mlflow = tracking_client()
    raw = service_spec("on-ray")
    raw["search"]["optimizer"] = ["sgd", "adam"]  # two populations: two Ray trials
    raw["resources"] = {"max_concurrent_trials": 1}
    with live_server(make_settings(tmp_path, executor="ray")) as server, server.client() as api:
        health = api.get("/healthz").json()
        assert health["checks"]["ray"] == {
            "ok": True,
            "detail": "the service's own Ray, joined by every sweep",
        }
        created = api.post("/sweeps", json=raw)
        assert created.status_code == 201 and created.json()["executor"] == "ray"
        sweep = server.wait_status(created.json()["id"], timeout=420)
        log = (server.settings.sweeps_dir / sweep["id"] / "driver.log").read_text()
        assert sweep["status"] == "succeeded", (sweep["error"], log[-3000:])

        p = sweep["progress"]
        # the service's Ray is this machine: one trial trains both populations on every CPU
        assert (p["lanes_total"], p["trials_done"], p["trials_total"]) == (6, 1, 1)
        report = api.get(f"/sweeps/{sweep['id']}/report").json()
        assert report["executor"] == "ray" and len(report["lanes"]) == 6
        assert {lane["trial_id"] for lane in report["lanes"]} == {
            "p000-sgd-constant",
            "p001-adam-constant",
        }
        png = api.get(f"/sweeps/{sweep['id']}/plots/goldilocks.png")
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")

    lanes = sweep_runs(mlflow, sweep)
    assert len(lanes) == 6 and {r.info.status for r in lanes} == {"FINISHED"}
    assert {r.info.run_id for r in lanes} == {lane["run_id"] for lane in report["lanes"]}
