"""The HTTP API without drivers (runner paused): validation, limits, auth, idempotency, queue,
cancel of queued sweeps, the CLI client, and the same API on PostgreSQL."""

from __future__ import annotations

import json

import httpx
import pytest
import yaml
from svc_testlib import (
    TOKEN,
    live_server,
    paused_settings,
    postgres_database,
    service_spec,
    tracking_client,
)
from typer.testing import CliRunner

from service.cli import app as cli_app


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with live_server(paused_settings(tmp_path_factory.mktemp("paused"))) as s:
        yield s


@pytest.fixture(scope="module")
def mlflow_client():
    return tracking_client()


@pytest.fixture
def api(server):
    with server.client() as c:
        yield c


def drain(api) -> None:
    """Cancel every queued sweep, so a test sees an empty queue."""
    queued = api.get("/sweeps", params={"status": "queued", "limit": 200}).json()["items"]
    for s in queued:
        assert api.post(f"/sweeps/{s['id']}/cancel").status_code == 200


def total(api) -> int:
    return api.get("/sweeps").json()["total"]


def detail(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"detail"} and {"message", "errors"} <= set(body["detail"]), body
    return body["detail"]


# --------------------------------------------------------------------------- happy submit


def test_submit_json_and_yaml_answer_201_queued(api, server):
    drain(api)
    raw = service_spec("api-json")
    r = api.post("/sweeps", json=raw)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "queued" and len(body["id"]) == 32
    assert r.headers["location"] == f"/sweeps/{body['id']}"
    # the spec is stored validated, defaults filled in
    assert body["spec"]["search"]["learning_rate"]["num"] == 3
    assert body["spec"]["early_stopping"]["diverge_factor"] == 4.0
    assert body["progress"] is None and body["mlflow"] is None and body["report_url"] is None

    text = yaml.safe_dump(service_spec("api-yaml"))
    r = api.post("/sweeps", content=text, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    got = api.get(f"/sweeps/{r.json()['id']}").json()
    assert got["name"] == "api-yaml" and got["status"] == "queued"
    assert got["created_at"].endswith("Z") or got["created_at"].endswith("+00:00")
    drain(api)


# --------------------------------------------------------------------------- bad input


def _with(path: str, value):
    raw = service_spec("bad")
    node = raw
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    return raw


def _without(path: str, renamed: str):
    raw = service_spec("bad")
    node = raw
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    node[renamed] = node.pop(last)
    return raw


BILLION_LAUGHS = (
    "name: bomb\na: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\ndata: {name: iris}\n"
)

BAD_SPECS = [
    pytest.param(_with("search.optimizer", ["adamx"]), "search.optimizer: unknown optimizer 'adamx'", id="unknown-optimizer"),
    pytest.param(_with("data.name", "mnistt"), "data.name: unknown dataset 'mnistt'", id="unknown-dataset"),
    pytest.param(_with("model", {"name": "transformer"}), "model", id="unknown-model"),
    pytest.param(_with("loss", "hinge"), "loss: unknown loss 'hinge'", id="unknown-loss"),
    pytest.param(_with("search.learning_rate.min", -1.0), "search.learning_rate.min:", id="negative-lr"),
    pytest.param(_with("search.learning_rate.min", 10.0), "search.learning_rate: min (10.0) must be smaller than max", id="lr-min-above-max"),
    pytest.param(_with("train.steps", 0), "train.steps:", id="zero-steps"),
    pytest.param(_with("train.steps", "many"), "train.steps:", id="steps-not-a-number"),
    pytest.param(_with("train.steps", "20"), "train.steps: Input should be a valid integer, not the string '20'", id="steps-quoted"),
    pytest.param(_without("search.learning_rate", "learnig_rate"), "search.learnig_rate: unknown key (misspelled?)", id="misspelled-key"),
    pytest.param(_with("train.batch_size", 500), "train.batch_size: 500 is larger than the 120 training rows", id="batch-above-rows"),
    pytest.param(_with("name", "../evil"), "name:", id="dotdot-name"),
    pytest.param(_with("name", ".."), "name:", id="dots-name"),
    pytest.param(_with("data", {"path": "../../etc/passwd"}), "data.path: '../../etc/passwd' is outside", id="data-path-escapes"),
    pytest.param(_with("data", {"path": "/etc/passwd"}), "data.path: '/etc/passwd' is outside", id="data-path-absolute"),
    pytest.param(["not", "a", "mapping"], "spec: expected a mapping", id="top-level-list"),
    pytest.param(_with("train.steps", 10**12), "train.steps: 1,000,000,000,000 is above the cap", id="steps-over-budget"),
    pytest.param(_with("train.steps", 10**23), "train.steps: 100,000,000,000,000,000,000,000 is above the cap", id="steps-beyond-int64"),
    pytest.param(_with("model", {"name": "mlp", "hidden": [100000, 100000]}), "model: one trial needs about", id="model-cannot-fit"),
]  # fmt: skip


def _state(api, server) -> tuple[int, list]:
    return total(api), sorted(server.settings.sweeps_dir.iterdir())


def _assert_nothing_created(api, server, client, before, experiment: str | None) -> None:
    assert _state(api, server) == before, "a sweep row or folder was created"
    if experiment:
        assert client.get_experiment_by_name(experiment) is None, "an MLflow experiment exists"


@pytest.mark.parametrize(("raw", "phrase"), BAD_SPECS)
def test_bad_spec_is_422_naming_the_field_and_creates_nothing(
    api, server, mlflow_client, raw, phrase
):
    before = _state(api, server)
    r = api.post("/sweeps", json=raw)
    assert r.status_code == 422, r.text
    d = detail(r)
    assert phrase in d["message"], d
    assert d["errors"] and all(":" in line for line in d["errors"]), d
    experiment = raw.get("experiment") if isinstance(raw, dict) else None
    _assert_nothing_created(api, server, mlflow_client, before, experiment)


BAD_BODIES = [
    pytest.param(b"name: x\ndata: {name: iris\nmodel: {name: mlp}\n", "application/yaml", "spec: malformed YAML at line 3", id="malformed-yaml"),
    pytest.param(b'{"name": "x", "data": ', "application/json", "spec: malformed JSON at line 1", id="malformed-json"),
    pytest.param(BILLION_LAUGHS.encode(), "application/yaml", "aliases (*name) are not accepted", id="yaml-alias-bomb"),
    pytest.param(b'{"name": "x", "train": {"steps": NaN}}', "application/json", "train.steps", id="json-nan"),
    pytest.param(b"   ", "application/json", "spec: the request body is empty", id="empty-body"),
    pytest.param(b"\xff\xfe\x00", "application/yaml", "spec: the body is not UTF-8", id="not-utf8"),
    pytest.param(b"[" * 50_000, "application/json", "spec:", id="deep-nesting"),
    pytest.param(b'{"name": "x", "train": {"steps": 1, "steps": 2}}', "application/json", "train: duplicate key 'steps'", id="json-duplicate-key"),
    pytest.param(b"name: x\nsearch:\n  seed: 1\n  seed: 2\n", "application/yaml", "search: duplicate key 'seed' at line 4", id="yaml-duplicate-key"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "content_type", "phrase"), BAD_BODIES)
def test_malformed_body_is_422_and_creates_nothing(api, body, content_type, phrase):
    before = total(api)
    r = api.post("/sweeps", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 422, r.text
    assert phrase in detail(r)["message"]
    assert total(api) == before


def test_unsupported_content_type_is_415(api):
    before = total(api)
    r = api.post("/sweeps", content=b"name: x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert detail(r)["message"].startswith("Content-Type: 'text/plain' is not accepted")
    assert total(api) == before


def test_oversized_body_is_413_before_parsing(api, server, mlflow_client):
    limit = server.settings.max_body_bytes
    raw = service_spec("huge")
    raw["search"]["optimizer_args"] = {"momentum": [0.9] * (limit // 4)}  # valid-looking, big
    before = _state(api, server)
    r = api.post("/sweeps", json=raw)
    assert r.status_code == 413, r.text
    assert detail(r)["message"] == f"body: request body is larger than the limit of {limit} bytes"

    def chunks():  # no Content-Length: counted as it streams
        yield b'{"name": "huge", "pad": "'
        for _ in range(limit // 1024 + 2):
            yield b"x" * 1024
        yield b'"}'

    r = api.post("/sweeps", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text
    assert "body:" in detail(r)["message"]
    _assert_nothing_created(api, server, mlflow_client, before, raw["experiment"])


# --------------------------------------------------------------------------- auth


def test_auth_bearer_token_on_every_endpoint_but_healthz(server):
    sid = "0" * 32
    endpoints = [
        ("GET", "/sweeps"),
        ("POST", "/sweeps"),
        ("GET", f"/sweeps/{sid}"),
        ("POST", f"/sweeps/{sid}/cancel"),
        ("GET", f"/sweeps/{sid}/report"),
        ("GET", f"/sweeps/{sid}/plots/goldilocks.png"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
    ]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        for method, path in endpoints:
            r = httpx.request(method, server.url + path, headers=headers, json=service_spec("x"))
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert detail(r)["message"].startswith("Authorization:")
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(server.url + "/sweeps", headers=good).status_code == 200
    assert httpx.get(server.url + "/openapi.json", headers=good).json()["info"]["title"]
    assert "swagger" in httpx.get(server.url + "/docs", headers=good).text.lower()
    health = httpx.get(server.url + "/healthz")  # no token needed
    assert health.status_code == 200 and health.json()["live"] is True


def test_healthz_reports_readiness(server):
    r = httpx.get(server.url + "/healthz", params={"require_ready": True})
    body = r.json()
    assert r.status_code == 200 and body["ready"] is True and body["status"] == "ok", body
    assert set(body["checks"]) == {"store", "ray", "mlflow", "runner"}
    assert body["checks"]["store"]["detail"].startswith("sqlite, schema 0002")


# --------------------------------------------------------------------------- idempotency, queue


def test_idempotency_key_returns_the_same_sweep_and_409_on_another_body(api):
    drain(api)
    raw = service_spec("idem")
    before = total(api)
    first = api.post("/sweeps", json=raw, headers={"Idempotency-Key": "retry-1"})
    assert first.status_code == 201, first.text
    # the same spec, re-encoded as YAML with the keys in another order: still the same body
    again = api.post(
        "/sweeps",
        content=yaml.safe_dump(raw, sort_keys=True),
        headers={"Idempotency-Key": "retry-1", "Content-Type": "application/yaml"},
    )
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = api.post(
        "/sweeps", json=service_spec("idem-other"), headers={"Idempotency-Key": "retry-1"}
    )
    assert other.status_code == 409
    assert detail(other)["message"].startswith("Idempotency-Key: 'retry-1' was used")
    assert total(api) == before + 1
    bad_key = api.post("/sweeps", json=raw, headers={"Idempotency-Key": "has space"})
    assert bad_key.status_code == 422 and detail(bad_key)["message"].startswith("Idempotency-Key")
    drain(api)


def test_full_queue_answers_429_with_retry_after(api, server):
    drain(api)
    cap = server.settings.max_queue
    keyed = service_spec("q-keyed")
    ids = []
    for i in range(cap):
        raw, key = (keyed, {"Idempotency-Key": "q-key"}) if i == 0 else (service_spec(f"q{i}"), {})
        r = api.post("/sweeps", json=raw, headers=key)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    before = total(api)
    r = api.post("/sweeps", json=service_spec("one-too-many"))
    assert r.status_code == 429
    assert r.headers["retry-after"] == str(server.settings.retry_after_s)
    assert detail(r)["message"].startswith(f"queue: full ({cap} sweeps waiting")
    assert total(api) == before
    # a retried submit of a sweep already in the queue is no new work: not refused
    retry = api.post("/sweeps", json=keyed, headers={"Idempotency-Key": "q-key"})
    assert retry.status_code == 201 and retry.json()["id"] == ids[0]
    # the queue frees up as sweeps leave it
    assert api.post(f"/sweeps/{ids[0]}/cancel").status_code == 200
    assert api.post("/sweeps", json=service_spec("fits-now")).status_code == 201
    drain(api)


# --------------------------------------------------------------------------- list, get, cancel


def test_list_newest_first_filtered_and_paginated(api):
    drain(api)
    ids = [api.post("/sweeps", json=service_spec(f"list{i}")).json()["id"] for i in range(3)]
    page = api.get("/sweeps", params={"status": "queued", "limit": 2}).json()
    assert page["total"] == 3 and page["limit"] == 2 and page["offset"] == 0
    assert [s["id"] for s in page["items"]] == [ids[2], ids[1]]
    rest = api.get("/sweeps", params={"status": "queued", "limit": 2, "offset": 2}).json()
    assert [s["id"] for s in rest["items"]] == [ids[0]]
    drain(api)
    cancelled = api.get("/sweeps", params={"status": "cancelled", "limit": 200}).json()
    assert set(ids) <= {s["id"] for s in cancelled["items"]}
    for params, field in (
        ({"status": "sleeping"}, "query.status"),
        ({"limit": 0}, "query.limit"),
        ({"offset": -1}, "query.offset"),
        ({"offset": 10**30}, "query.offset"),
    ):
        r = api.get("/sweeps", params=params)
        assert r.status_code == 422 and detail(r)["message"].startswith(field), r.text


def test_cancel_queued_then_409_404_422(api):
    sid = api.post("/sweeps", json=service_spec("cancel-me")).json()["id"]
    r = api.post(f"/sweeps/{sid}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert r.json()["finished_at"] is not None
    again = api.post(f"/sweeps/{sid}/cancel")
    assert again.status_code == 409
    assert detail(again)["message"] == f"status: sweep {sid} already cancelled; nothing to cancel"
    unknown = api.post(f"/sweeps/{'0' * 32}/cancel")
    assert unknown.status_code == 404 and detail(unknown)["message"].startswith("id: no sweep")
    assert api.get(f"/sweeps/{'0' * 32}").status_code == 404
    malformed = api.get("/sweeps/not-an-id")
    assert malformed.status_code == 422 and detail(malformed)["message"].startswith("path.sweep_id")
    # nothing to read before it ran, and no way out of the folder
    report = api.get(f"/sweeps/{sid}/report")
    assert report.status_code == 404 and "no report yet" in detail(report)["message"]
    assert api.get(f"/sweeps/{sid}/plots/goldilocks.png").status_code == 404
    for name in ("..%2Fsweep.json", "..%2F..%2Fgoldilocks.db", "%2E%2E", ".hidden.png"):
        r = api.get(f"/sweeps/{sid}/plots/{name}")
        assert r.status_code == 422, (name, r.text)
        assert detail(r)["message"].startswith("name:")


def test_errors_are_json_for_unknown_routes_and_methods(api):
    r = api.get("/nope")
    assert r.status_code == 404 and detail(r)["message"] == "Not Found"
    r = api.delete("/sweeps")
    assert r.status_code == 405 and detail(r)["message"] == "Method Not Allowed"


# --------------------------------------------------------------------------- CLI client


def test_cli_client_submit_status_list_cancel_report(server, tmp_path):
    api = server.client()
    drain(api)
    runner = CliRunner(env={"GOLDILOCKS_API_TOKEN": TOKEN, "GOLDILOCKS_SERVER": server.url})
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump(service_spec("cli-client")))

    result = runner.invoke(cli_app, ["submit", str(spec)])
    assert result.exit_code == 0, result.output
    sid = result.stdout.split()[1]
    assert api.get(f"/sweeps/{sid}").json()["name"] == "cli-client"

    result = runner.invoke(cli_app, ["status", sid])
    assert result.exit_code == 0 and "queued" in result.stdout and "cli-client" in result.stdout
    result = runner.invoke(cli_app, ["list", "--status", "queued"])
    assert result.exit_code == 0 and sid in result.stdout
    result = runner.invoke(cli_app, ["report", sid])
    assert result.exit_code == 2 and "no report yet (status queued)" in result.stderr

    result = runner.invoke(cli_app, ["cancel", sid])
    assert result.exit_code == 0 and f"cancelled {sid}" in result.stdout
    result = runner.invoke(cli_app, ["cancel", sid])
    assert result.exit_code == 1 and "already cancelled" in result.stderr
    result = runner.invoke(cli_app, ["cancel", sid, "--wait"])  # its goal is met: 0
    assert result.exit_code == 0 and f"cancelled {sid}" in result.stdout, result.output
    result = runner.invoke(cli_app, ["status", sid])
    assert result.exit_code == 3 and "cancelled" in result.stdout, result.output
    result = runner.invoke(cli_app, ["status", "0" * 32])
    assert result.exit_code == 2 and "no sweep" in result.stderr

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_with("search.optimizer", ["adamx"])))
    result = runner.invoke(cli_app, ["submit", str(bad)])
    assert result.exit_code == 2
    assert "search.optimizer: unknown optimizer 'adamx'" in " ".join(result.stderr.split())

    no_token = CliRunner(env={"GOLDILOCKS_API_TOKEN": "", "GOLDILOCKS_SERVER": server.url})
    result = no_token.invoke(cli_app, ["list"])
    assert result.exit_code == 2 and "Authorization" in result.stderr
    result = runner.invoke(cli_app, ["list", "--server", "http://127.0.0.1:9"])
    assert result.exit_code == 4 and "cannot reach the server" in result.stderr


# --------------------------------------------------------------------------- PostgreSQL


def test_api_on_postgresql(tmp_path):
    with (
        postgres_database() as pg_url,
        live_server(paused_settings(tmp_path, database_url=pg_url)) as server,
        server.client() as api,
    ):
        health = api.get("/healthz").json()
        assert health["checks"]["store"]["detail"].startswith("postgresql, schema 0002")
        raw = service_spec("on-pg")
        first = api.post("/sweeps", json=raw, headers={"Idempotency-Key": "pg-1"})
        assert first.status_code == 201, first.text
        sid = first.json()["id"]
        again = api.post("/sweeps", json=raw, headers={"Idempotency-Key": "pg-1"})
        assert again.json()["id"] == sid
        bad = api.post("/sweeps", json=_with("search.optimizer", ["adamx"]))
        assert bad.status_code == 422
        page = api.get("/sweeps").json()
        assert page["total"] == 1 and page["items"][0]["id"] == sid
        assert api.get(f"/sweeps/{sid}").json()["spec"]["name"] == "on-pg"
        assert api.post(f"/sweeps/{sid}/cancel").json()["status"] == "cancelled"
        assert api.post(f"/sweeps/{sid}/cancel").status_code == 409
