"""Fault: PostgreSQL restarted (or stopped) under the service's job store and under the MLflow
tracking server, mid-sweep.

The PostgreSQL is a private one (tests/faults/faultservers.py: `initdb` + `pg_ctl` as the
postgres user, a free loopback port): the machine's shared PostgreSQL on 5432 is never touched.
The service is the real app under uvicorn in a thread of the test process (svc_testlib), its
job store on that PostgreSQL (GOLDILOCKS_DATABASE_URL); its drivers are real processes. While
a sweep trains, a watcher asks GET /healthz and GET /sweeps/{id} every 0.1 s.

- `pg_ctl restart -m fast` under the job store: every connection is cut. The service keeps
  answering (GET /healthz 200 throughout, no request hangs), the sweep ends `succeeded` with
  one attempt, every lane's history is complete in MLflow, and the job store holds the one sweep.
- The same restart under an `mlflow server` whose backend is that PostgreSQL (and the job store
  too, slow): the server's pooled connections die; the sweep still succeeds, nothing lost or
  logged twice.
- PostgreSQL stopped for seconds under a paused service (no sweep runs): every call answers
  within seconds (GET /healthz 200 "degraded", the store not ok; ?require_ready=true 503), and
  once it is back every sweep accepted before is there, none lost or doubled; the sweep
  endpoints answer 503 with Retry-After while the store is down (they answered 500 before).
- PostgreSQL down at the moment the runner sees the driver exit (slow): a hook on
  `Runner._after_exit` stops the server (`pg_ctl stop -m fast`) and starts it 3 s later. The
  sweep still ends `succeeded` once the store is back (it stayed `running` before the runner
  kept the driver until its end was recorded).

Figures (pytest -s): the restart's seconds, when it landed, the answers the watcher got.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import threading
import time

import faultlib  # noqa: F401 (puts svc_testlib on the path)
import httpx
import pytest
from faultlib import keep_figures, mlflow_runs, repeated_steps
from faultservers import MlflowServer, PrivatePostgres, private_postgres_unavailable
from svc_testlib import live_server, make_settings, paused_settings, service_spec, wait_for

STEPS, EVAL_EVERY = 60_000, 100  # 600 eval points a lane: seconds of training, not minutes
EXPECTED = list(range(EVAL_EVERY, STEPS + 1, EVAL_EVERY))
HISTORIES = {"train_loss": EXPECTED, "val_loss": [0, *EXPECTED]}
SLOW_REQUEST_S = 10.0  # an answer slower than this counts as a hang


@pytest.fixture
def pg():
    why = private_postgres_unavailable()
    if why:
        pytest.skip(f"no private PostgreSQL: {why}")
    server = PrivatePostgres().start()
    try:
        yield server
    finally:
        server.stop()


def fault_sweep(name: str) -> dict:
    raw = service_spec(name, steps=STEPS, eval_every=EVAL_EVERY)
    # no lane diverges: every lane logs every eval point, so a complete history is known
    raw["search"]["learning_rate"].update(min=1e-3, max=0.1)
    return raw


class Watcher:
    """GET /healthz and GET /sweeps/{id} every 0.1 s in a thread: what each answered, when."""

    def __init__(self, server, sweep_id: str):
        self.server, self.sweep_id = server, sweep_id
        self.seen: list[tuple[float, str, str, float]] = []  # (t, op, code or error, seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(SLOW_REQUEST_S * 3 + 5)

    def _loop(self) -> None:
        server = self.server
        with httpx.Client(
            base_url=server.url, headers=server.headers, timeout=SLOW_REQUEST_S * 3
        ) as api:
            while not self._stop.is_set() and len(self.seen) < 5000:
                for op, path in (("healthz", "/healthz"), ("get", f"/sweeps/{self.sweep_id}")):
                    t0 = time.monotonic()
                    try:
                        code = str(api.get(path).status_code)
                    except httpx.TransportError as err:
                        code = type(err).__name__
                    self.seen.append((t0, op, code, time.monotonic() - t0))
                self._stop.wait(0.1)

    def codes(self, op: str, since: float = 0.0) -> dict[str, int]:
        found: dict[str, int] = {}
        for t, o, code, _ in self.seen:
            if o == op and t >= since:
                found[code] = found.get(code, 0) + 1
        return found

    def figures(self) -> dict:
        times = [s for *_, s in self.seen]
        return {
            "requests": len(self.seen),
            "healthz": self.codes("healthz"),
            "get_sweep": self.codes("get"),
            "max_s": round(max(times), 2) if times else None,
            "median_ms": round(1000 * statistics.median(times), 1) if times else None,
        }


def submit(server, raw: dict) -> str:
    with server.client() as api:
        r = api.post("/sweeps", json=raw)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def wait_mid_training(settings, sweep_id: str, timeout: float = 240) -> float:
    """Until the sweep's folder says it is training (not done); its progress fraction."""
    progress = settings.sweeps_dir / sweep_id / "progress.json"

    def training():
        try:
            fraction = json.loads(progress.read_text())["fraction"]
        except (OSError, ValueError, KeyError):
            return None
        return fraction if fraction > 0 else None

    fraction = wait_for(training, timeout, "the sweep to start training", every=0.05)
    assert fraction < 0.5, fraction  # mid-training, not at its end
    return fraction


def wait_mlflow_open(settings, sweep_id: str, timeout: float = 120) -> float:
    """Until the sweep's MLflow runs exist (its tracker opens while training goes on: the
    folder's mlflow block is set when it is open); the progress fraction then, still training."""
    folder = settings.sweeps_dir / sweep_id

    def opened():
        try:
            return json.loads((folder / "sweep.json").read_text()).get("mlflow") or None
        except (OSError, ValueError):
            return None

    wait_for(opened, timeout, "the sweep's MLflow runs to open", every=0.05)
    fraction = json.loads((folder / "progress.json").read_text())["fraction"]
    assert fraction < 1, fraction  # still training: the restart comes mid-sweep
    return fraction


def assert_lanes_complete(uri: str, raw: dict) -> dict:
    runs = mlflow_runs(uri, raw["experiment"])
    assert len(runs) == 4, runs  # parent + 3 lanes, no second set
    assert {r["status"] for r in runs.values()} == {"FINISHED"}, runs
    assert not repeated_steps(runs), repeated_steps(runs)
    for run_id, run in runs.items():
        if run["kind"] == "lane":
            for key, steps in HISTORIES.items():
                assert run["steps"][key] == steps, (run_id, key, run["steps"][key][:10])
    return runs


def assert_one_sweep(server, sweep_id: str) -> None:
    with server.client() as api:
        listed = api.get("/sweeps", params={"limit": 50}).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == sweep_id, listed


def test_postgres_restart_under_the_job_store_mid_sweep(pg, tmp_path):
    raw = fault_sweep("pg-jobs")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    settings = make_settings(
        tmp_path / "data", database_url=pg.create_database("jobs"), tracking_uri=uri
    )
    with live_server(settings) as server:
        sweep_id = submit(server, raw)
        fraction = wait_mid_training(settings, sweep_id)
        with Watcher(server, sweep_id) as watcher:
            t_restart = time.monotonic()
            restart_s = pg.restart()
            final = server.wait_status(sweep_id, timeout=240)
            done = time.monotonic()
        with server.client() as api:
            # /healthz caches its checks for a few seconds: one taken during the restart may
            # still be served just after a quick sweep's end
            health = wait_for(
                lambda: (h := api.get("/healthz").json())["checks"]["store"]["ok"] and h,
                30, "the store check to pass again",
            ) or api.get("/healthz").json()  # fmt: skip
        assert_one_sweep(server, sweep_id)
    keep_figures(
        tmp_path / "pg_jobs_figures.json",
        "PostgreSQL restarted under the job store mid-sweep",
        {
            "restart_s": round(restart_s, 2),
            "restarted_at_fraction": fraction,
            "restart_to_final_s": round(done - t_restart, 1),
            "status": final["status"],
            "attempts": final["attempts"],
            "api": watcher.figures(),
            "get_sweep_after_restart": watcher.codes("get", since=t_restart + restart_s),
        },
    )
    assert final["status"] == "succeeded" and final["error"] is None, final
    assert final["attempts"] == 1, final  # no resume spent on a store restart
    assert health["checks"]["store"]["ok"], health
    assert watcher.codes("healthz") == {"200": len([s for s in watcher.seen if s[1] == "healthz"])}
    after = watcher.codes("get", since=t_restart + restart_s + 1.0)
    assert after and set(after) == {"200"}, after  # answers again once the store is back
    assert all(s < SLOW_REQUEST_S for *_, s in watcher.seen), watcher.figures()  # no hang
    assert_lanes_complete(uri, raw)


@pytest.mark.slow
def test_postgres_restart_under_the_mlflow_server_and_job_store_mid_sweep(pg, tmp_path):
    raw = fault_sweep("pg-mlflow")
    tracking = MlflowServer(pg.create_database("mlflow"), tmp_path / "mlflow")
    tracking.start()
    try:
        settings = make_settings(
            tmp_path / "data", database_url=pg.create_database("jobs"), tracking_uri=tracking.url
        )
        with live_server(settings) as server:
            sweep_id = submit(server, raw)
            wait_mid_training(settings, sweep_id)
            fraction = wait_mlflow_open(settings, sweep_id)
            logged = len(mlflow_runs(tracking.url, raw["experiment"]))
            with Watcher(server, sweep_id) as watcher:
                t_restart = time.monotonic()
                restart_s = pg.restart()
                final = server.wait_status(sweep_id, timeout=300)
                done = time.monotonic()
            assert_one_sweep(server, sweep_id)
        server_log = tracking.tail(20000)
        keep_figures(
            tmp_path / "pg_mlflow_figures.json",
            "PostgreSQL restarted under the MLflow server and the job store mid-sweep",
            {
                "restart_s": round(restart_s, 2),
                "restarted_at_fraction": fraction,
                "mlflow_runs_before_restart": logged,
                "restart_to_final_s": round(done - t_restart, 1),
                "status": final["status"],
                "attempts": final["attempts"],
                "api": watcher.figures(),
                "mlflow_server_500s": server_log.count(" 500 "),
            },
        )
        assert final["status"] == "succeeded" and final["error"] is None, final
        assert final["attempts"] == 1, final
        assert all(s < SLOW_REQUEST_S for *_, s in watcher.seen), watcher.figures()
        assert_lanes_complete(tracking.url, raw)
    finally:
        tracking.stop()


@pytest.mark.slow
def test_postgres_down_as_the_driver_ends_still_records_the_end(pg, tmp_path, monkeypatch):
    from service.runner import Runner

    raw = service_spec("pg-end")  # 20 steps: the point is its end
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    settings = make_settings(
        tmp_path / "data", database_url=pg.create_database("jobs"), tracking_uri=uri
    )
    outage: dict = {}
    real = Runner._after_exit

    def after_exit_with_the_store_down(self, sweep_id, rc, **kwargs):
        if not outage:  # once: the store stops just as the runner sees the driver gone
            t0 = time.monotonic()
            pg.down()
            outage.update(down_at=t0, down_s=time.monotonic() - t0)

            def back():
                pg.up()
                outage["up_at"] = time.monotonic()

            threading.Timer(3.0, back).start()
        return real(self, sweep_id, rc, **kwargs)

    monkeypatch.setattr(Runner, "_after_exit", after_exit_with_the_store_down)
    with live_server(settings) as server:
        sweep_id = submit(server, raw)
        wait_for(lambda: "up_at" in outage, 240, "the driver to end and the store to come back")
        answered: list[str] = []

        def ended():
            with server.client() as api:
                r = api.get(f"/sweeps/{sweep_id}")
            answered.append(str(r.status_code))
            return r.status_code == 200 and r.json()["status"] in ("succeeded", "failed") and r

        try:
            final = wait_for(ended, 30, "the sweep's end to be recorded", every=0.5).json()
        except AssertionError:
            final = server.sweep(sweep_id)
        folder_said = json.loads((settings.sweeps_dir / sweep_id / "sweep.json").read_text())
    keep_figures(
        tmp_path / "pg_end_figures.json",
        "PostgreSQL down as the driver ends",
        {
            "store_down_s": round(outage["up_at"] - outage["down_at"], 1),
            "status_30s_after_store_back": final["status"],
            "sweep_json": folder_said["status"],
            "get_sweep_after": {c: answered.count(c) for c in set(answered)},
        },
    )
    assert folder_said["status"] == "succeeded"
    assert final["status"] == "succeeded", final


def outage_calls(server, sweep_id: str) -> dict[str, tuple[int | str, float]]:
    """Each endpoint's status code (or the transport error: no answer) and seconds, once; each
    on a new connection (after a 500 uvicorn closes a kept-alive one: the app re-raised)."""
    calls = {
        "healthz": ("GET", "/healthz", None),
        "healthz_ready": ("GET", "/healthz?require_ready=true", None),
        "list": ("GET", "/sweeps", None),
        "get": ("GET", f"/sweeps/{sweep_id}", None),
        "post": ("POST", "/sweeps", service_spec("pg-outage-post")),
    }
    seen = {}
    for name, (method, path, body) in calls.items():
        t0 = time.monotonic()
        try:
            with server.client() as api:
                code: int | str = api.request(method, path, json=body).status_code
        except httpx.TransportError as err:  # no answer at all
            code = type(err).__name__
        seen[name] = (code, round(time.monotonic() - t0, 2))
    return seen


@pytest.fixture(scope="module")
def outage(tmp_path_factory):
    """A paused service on a private PostgreSQL, 3 sweeps queued, then the store stopped:
    (what each call answered while it was down, what the service says once it is back).
    Once for the two tests below."""
    why = private_postgres_unavailable()
    if why:
        pytest.skip(f"no private PostgreSQL: {why}")
    tmp_path = tmp_path_factory.mktemp("pg-outage")
    pg = PrivatePostgres().start()
    settings = paused_settings(tmp_path / "data", database_url=pg.create_database("jobs"))
    with contextlib.ExitStack() as stack:
        stack.callback(pg.stop)
        server = stack.enter_context(live_server(settings))
        queued = {submit(server, service_spec(f"pg-outage-{i}")) for i in range(3)}
        pg.down()
        try:
            time.sleep(0.5)
            down = outage_calls(server, next(iter(queued)))
        finally:
            pg.up()
        with server.client() as api:
            back = api.get("/sweeps", params={"limit": 50}).json()
            health = wait_for(
                lambda: (h := api.get("/healthz").json())["checks"]["store"]["ok"] and h,
                30, "the store to be healthy again",
            )  # fmt: skip
    figures = {"while_down": down, "queued_before": len(queued), "listed_after": back["total"]}
    keep_figures(
        tmp_path / "pg_outage_figures.json", "PostgreSQL stopped under the service", figures
    )
    return down, queued, back, health


def test_postgres_stopped_under_the_service_answers_in_bounds_and_loses_nothing(outage):
    down, queued, back, health = outage
    assert all(seconds < 5 for _, seconds in down.values()), down  # no call hangs
    assert down["healthz"][0] == 200 and down["healthz_ready"][0] == 503, down
    assert {s["id"] for s in back["items"]} == queued and back["total"] == 3, back
    assert health["checks"]["store"]["ok"], health


def test_postgres_stopped_under_the_service_answers_503(outage):
    down, *_ = outage
    assert {name: code for name, (code, _) in down.items() if name in ("list", "get", "post")} == {
        "list": 503,
        "get": 503,
        "post": 503,
    }, down
