"""A property-based fuzz of the live API from its own OpenAPI schema (schemathesis): valid and
invalid requests to every operation, bounded in examples and time, and never a 5xx.

The runner is paused (max_running 0), so the valid sweeps the fuzzer submits are queued and
never run; the token is required, as in production.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from svc_testlib import live_server, paused_settings

MAX_EXAMPLES = 25  # per operation and mode: 10 operations x 2 modes


@pytest.fixture
def fuzz_server(tmp_path):
    # A long queue, so that valid submits reach the store rather than the 429 early on.
    config = paused_settings(tmp_path, max_queue=100_000)
    with live_server(config) as server:
        yield server


@pytest.mark.timeout(300)
def test_api_never_answers_5xx(fuzz_server):
    """Every operation, valid (positive) and invalid (negative) requests. Driven by hand with
    Hypothesis: schemathesis' pytest integration (`from_fixture`) fails under pytest 9."""
    api = schemathesis.openapi.from_url(
        f"{fuzz_server.url}/openapi.json", headers=fuzz_server.headers, timeout=30
    )
    operations = [result.ok() for result in api.get_all_operations()]
    assert {op.label for op in operations} >= {
        "POST /sweeps",
        "GET /sweeps",
        "GET /sweeps/{sweep_id}",
        "POST /sweeps/{sweep_id}/cancel",
        "GET /sweeps/{sweep_id}/report",
        "GET /healthz",
        "POST /datasets",
        "GET /datasets",
        "GET /datasets/{dataset_id}",
    }
    answered: dict[str, set[int]] = {}
    for op in operations:
        statuses = answered.setdefault(op.label, set())
        for strategy in api.get_strategies_from_examples(op):  # the documented examples
            _fuzz(strategy, "example", fuzz_server, statuses)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(op.as_strategy(generation_mode=mode), mode, fuzz_server, statuses)
    # it went past the token into every branch worth reaching, not only 401s
    assert {201, 422} <= answered["POST /sweeps"], answered  # 201: the documented example
    assert 200 in answered["GET /sweeps"] and 404 in answered["GET /sweeps/{sweep_id}"], answered
    assert {201, 422} <= answered["POST /datasets"], answered  # 201: the documented example
    assert 404 in answered["GET /datasets/{dataset_id}"], answered


def _fuzz(strategy, mode, server, statuses: set[int]) -> None:
    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=timedelta(seconds=10),  # per request: a slow answer is a finding too
        suppress_health_check=list(HealthCheck),
        derandomize=True,  # the same examples every run: a CI failure reproduces
        database=None,
    )
    def check(case):
        response = case.call(headers=server.headers, timeout=30)
        statuses.add(response.status_code)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} ({mode}) -> {response.status_code}: "
            f"{response.text[:2000]}"
        )
        kind = (response.headers.get("content-type") or [""])[0]  # schemathesis: lists
        assert kind.startswith(("application/json", "image/png")), (case.formatted_path, kind)

    check()
