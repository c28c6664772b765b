"""Helpers every test package shares: free loopback ports, throwaway PostgreSQL databases, and
reading a sweep folder's eval points. (The tiny spec lives in conftest.py; servers in
mlflow_server.py, ray_cluster.py and service/svc_testlib.py.)"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_ADMIN_URLS = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://root@127.0.0.1:5432/test",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_admin_url() -> str | None:
    """The first PostgreSQL admin URL that accepts a connection (GOLDILOCKS_TEST_PG_URL first),
    or None."""
    import psycopg

    given = os.environ.get("GOLDILOCKS_TEST_PG_URL")
    for url in [given] if given else PG_ADMIN_URLS:
        try:
            with psycopg.connect(url, connect_timeout=3):
                return url
        except psycopg.Error:
            continue
    return None


@contextlib.contextmanager
def postgres_database(admin_url: str | None = None) -> Iterator[str]:
    """A fresh database `goldilocks_test_<random>`; yields its SQLAlchemy URI (psycopg 3 named
    as the driver: psycopg2 is not installed), drops it after."""
    import psycopg
    from psycopg import sql

    admin_url = admin_url or pg_admin_url()
    if admin_url is None:
        pytest.fail(f"PostgreSQL is not reachable at any of {PG_ADMIN_URLS}")
    name = f"goldilocks_test_{uuid.uuid4().hex[:10]}"
    # CREATE/DROP DATABASE cannot run inside a transaction
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _ = admin_url.rpartition("/")
    try:
        yield f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            # FORCE: a pooled connection of an (already stopped) server may linger
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def sweep_points(sweep: Path) -> list[dict]:
    """The eval points a Ray sweep's driver received (points.jsonl), without trial endings."""
    rows = [json.loads(line) for line in (Path(sweep) / "points.jsonl").read_text().splitlines()]
    return [r for r in rows if "eval_step" in r]
