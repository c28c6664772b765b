"""Fault: 200 API clients at once against one real service (`goldilocks serve`, its own
process, on loopback), paused so the sweeps it accepts stay queued.

Each client has its own connection and loops over GET /healthz, GET /sweeps, GET /sweeps/{id},
POST /sweeps (a valid small spec) and a retried POST with an Idempotency-Key, for 10 s or
2,000 requests in all, whichever comes first. A full queue answers 429 with Retry-After: a
correct answer. What must hold: no 5xx, no connection error, no wrong answer, p99 under 5 s per
endpoint on this shared 2-core machine; afterwards the service still answers and its queue
holds exactly the sweeps it said 201 to (none lost, none added), each key's retries the one
sweep. The figures are printed (pytest -s) and written to tmp_path/load_figures.json.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import statistics
import time

import faultlib  # noqa: F401 (puts svc_testlib on the path)
import httpx
import pytest
from faultlib import keep_figures
from svc_testlib import TOKEN, ServiceProcess, service_spec

CLIENTS = 200
MAX_REQUESTS = 2000
MAX_SECONDS = 10.0
MAX_QUEUE = 24
P99_BOUND_S = 5.0
KEYS = ("load-key-a", "load-key-b", "load-key-c")
# each client walks this mix from its own offset: healthz 2, list 2, get 3, post 2, keyed 1
MIX = ("healthz", "list", "get", "post", "get", "list", "healthz", "get", "post", "keyed")
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def keyed_spec(key: str) -> dict:
    raw = service_spec(key)
    raw["experiment"] = f"svc-{key}"  # the same body on every retry
    return raw


class Load:
    """What the clients saw: latencies and answers per endpoint, and what was wrong."""

    def __init__(self, seeded: list[str], keyed: dict[str, str]):
        self.ids = list(seeded)  # sweeps known to exist, for GET /sweeps/{id}
        self.keyed = keyed  # key -> the sweep id its first submit got
        self.sent = 0
        self.latency: dict[str, list[float]] = {op: [] for op in dict.fromkeys(MIX)}
        self.codes: dict[str, dict[str, int]] = {op: {} for op in dict.fromkeys(MIX)}
        self.created: set[str] = set()  # ids of new sweeps answered 201
        self.server_errors = 0
        self.connection_errors = 0
        self.wrong: list[str] = []  # answers that are not what the API promises

    def take(self, deadline: float) -> bool:
        if self.sent >= MAX_REQUESTS or time.monotonic() > deadline:
            return False
        self.sent += 1
        return True

    async def one(self, client: httpx.AsyncClient, op: str, name: str) -> None:
        key = KEYS[self.sent % len(KEYS)] if op == "keyed" else None
        t0 = time.perf_counter()
        try:
            if op == "healthz":
                r = await client.get("/healthz")
            elif op == "list":
                r = await client.get("/sweeps", params={"limit": 20})
            elif op == "get":
                r = await client.get(f"/sweeps/{self.ids[self.sent % len(self.ids)]}")
            elif op == "post":
                r = await client.post("/sweeps", json=service_spec(name))
            else:
                r = await client.post(
                    "/sweeps", json=keyed_spec(key), headers={"Idempotency-Key": key}
                )
        except httpx.TransportError as err:
            self.connection_errors += 1
            self.wrong.append(f"{op}: {type(err).__name__}: {err}")
            return
        self.latency[op].append(time.perf_counter() - t0)
        codes = self.codes[op]
        codes[str(r.status_code)] = codes.get(str(r.status_code), 0) + 1
        if r.status_code >= 500:
            self.server_errors += 1
        self.check(op, key, r)

    def check(self, op: str, key: str | None, r: httpx.Response) -> None:
        ok = {"healthz": (200,), "list": (200,), "get": (200,)}.get(op, (201, 429))
        if r.status_code not in ok:
            self.wrong.append(f"{op}: {r.status_code} {r.text[:200]}")
        elif r.status_code == 429 and not r.headers.get("retry-after", "").isdigit():
            self.wrong.append(f"{op}: 429 without Retry-After")
        elif r.status_code == 201 and op == "keyed":
            if r.json()["id"] != self.keyed[key] or r.headers.get("idempotent-replayed") != "true":
                self.wrong.append(f"keyed {key}: {r.json()['id']}, not {self.keyed[key]}")
        elif r.status_code == 201:
            self.created.add(r.json()["id"])
            self.ids.append(r.json()["id"])


async def client_loop(load: Load, client: httpx.AsyncClient, worker: int, deadline: float):
    for j in itertools.count():
        if not load.take(deadline):
            return
        op = MIX[(worker + j) % len(MIX)]
        await load.one(client, op, f"load-{worker}-{j}")


async def flood(load: Load, url: str) -> float:
    # Every client made before the clock starts, sharing one SSL context: building one per
    # client (httpx's default) takes ~10 ms of this loop each, stalling the clients already
    # waiting on their answers, and the figures would be the client's, not the service's.
    tls = ssl.create_default_context()
    clients = [
        httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=30, verify=tls)
        for _ in range(CLIENTS)
    ]
    try:
        t0 = time.monotonic()
        deadline = t0 + MAX_SECONDS
        tasks = [client_loop(load, c, w, deadline) for w, c in enumerate(clients)]
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=MAX_SECONDS + 60)
        return time.monotonic() - t0
    finally:
        for c in clients:
            await c.aclose()


def quantile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


@pytest.fixture
def service(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    env = {
        "GOLDILOCKS_API_TOKEN": TOKEN,
        "GOLDILOCKS_MAX_RUNNING": "0",  # paused: accepted sweeps stay queued
        "GOLDILOCKS_MAX_QUEUE": str(MAX_QUEUE),
        "GOLDILOCKS_RETRY_AFTER_S": "7",
    }
    proc = ServiceProcess(data, **env).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.mark.slow
def test_200_concurrent_clients_get_true_answers_and_the_queue_holds(service, tmp_path):
    with httpx.Client(base_url=service.url, headers=HEADERS, timeout=30) as api:
        keyed = {}
        for key in KEYS:
            r = api.post("/sweeps", json=keyed_spec(key), headers={"Idempotency-Key": key})
            assert r.status_code == 201, r.text
            keyed[key] = r.json()["id"]
        seeded = list(keyed.values())
        for i in range(3):
            r = api.post("/sweeps", json=service_spec(f"seed-{i}"))
            assert r.status_code == 201, r.text
            seeded.append(r.json()["id"])

    load = Load(seeded, keyed)
    wall = asyncio.run(flood(load, service.url))

    with httpx.Client(base_url=service.url, headers=HEADERS, timeout=30) as api:
        assert api.get("/healthz").status_code == 200  # still answering
        queued = api.get("/sweeps", params={"status": "queued", "limit": 200}).json()
    in_queue = {s["id"] for s in queued["items"]}
    answered = set(seeded) | load.created
    done = sum(len(v) for v in load.latency.values())
    figures = {
        "clients": CLIENTS,
        "requests": done,
        "wall_s": round(wall, 2),
        "requests_per_s": round(done / wall, 1),
        "server_errors_5xx": load.server_errors,
        "connection_errors": load.connection_errors,
        "wrong_answers": len(load.wrong),
        "codes": load.codes,
        "latency_ms": {
            op: {
                "n": len(v),
                "p50": round(1000 * quantile(v, 0.50), 1),
                "p99": round(1000 * quantile(v, 0.99), 1),
                "max": round(1000 * max(v), 1),
            }
            for op, v in load.latency.items()
            if v
        },
        "queue": {
            "max_queue": MAX_QUEUE,
            "queued_after": queued["total"],
            "answered_201": len(answered),
            "overshoot": max(0, queued["total"] - MAX_QUEUE),  # the cap is soft (submit.py)
        },
    }
    keep_figures(tmp_path / "load_figures.json", "200 concurrent API clients", figures)

    assert load.connection_errors == 0 and load.server_errors == 0, load.wrong[:10]
    assert not load.wrong, load.wrong[:10]
    assert done == load.sent and done >= 200, figures  # every request answered
    for op, v in load.latency.items():
        assert v and quantile(v, 0.99) < P99_BOUND_S, (op, figures["latency_ms"])
    assert load.codes["post"].get("429", 0) > 0  # the cap pushed back
    assert in_queue == answered and queued["total"] == len(answered)  # none lost, none extra
