"""The job store on SQLite and PostgreSQL: functions, compare-and-set, migrations keep rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from svc_testlib import postgres_database

from service import store
from service.store import CancelOutcome, SweepStatus


@pytest.fixture(scope="module")
def pg_url():
    with postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    return request.getfixturevalue("pg_url")


def _pg(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def sessions(db_url):
    url = _pg(db_url)
    engine = store.make_engine(url)
    with engine.begin() as conn:  # every test starts from an empty schema
        conn.execute(sa.text("DROP TABLE IF EXISTS sweeps"))
        conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
    store.upgrade_to_head(url)
    yield store.session_factory(engine)
    engine.dispose()


def _create(session, name="a", key=None):
    return store.create_sweep(
        session, name=name, spec={"name": name}, executor="inline", idempotency_key=key
    )


def test_create_get_list_newest_first_with_filter_and_pages(sessions):
    with sessions() as s:
        made = [_create(s, name=f"s{i}") for i in range(5)]
        got = store.get_sweep(s, sweep_id=made[0].id)
        assert got.status == "queued" and got.spec == {"name": "s0"} and got.attempts == 0
        assert got.created_at.tzinfo is not None  # aware UTC on both backends
        assert abs(got.created_at - datetime.now(UTC)) < timedelta(minutes=5)
        assert store.get_sweep(s, sweep_id="f" * 32) is None

        items, total = store.list_sweeps(s, limit=2, offset=0)
        assert total == 5 and [i.name for i in items] == ["s4", "s3"]
        items, _ = store.list_sweeps(s, limit=2, offset=4)
        assert [i.name for i in items] == ["s0"]

        store.finish_sweep(s, sweep_id=made[1].id, status=SweepStatus.failed, error="boom")
        items, total = store.list_sweeps(s, status="failed")
        assert total == 1 and items[0].id == made[1].id and items[0].error == "boom"
        assert items[0].finished_at is not None
        assert store.count_status(s, status="queued") == 4


def test_idempotency_key_is_unique(sessions):
    with sessions() as s:
        first = _create(s, key="k1")
        assert store.get_by_idempotency_key(s, key="k1").id == first.id
        with pytest.raises(IntegrityError):
            _create(s, key="k1")
        s.rollback()
        _create(s, key=None)  # many sweeps without a key
        _create(s, key=None)


def test_claim_is_oldest_first_and_compare_and_set(sessions):
    with sessions() as s:
        a, b = _create(s, name="a"), _create(s, name="b")
        assert store.request_cancel(s, sweep_id=a.id) == CancelOutcome.cancelled
        claimed = store.claim_next_queued(s)  # a was cancelled first: b is next
        assert claimed.id == b.id and claimed.status == "running" and claimed.attempts == 1
        assert claimed.started_at is not None
        assert store.claim_next_queued(s) is None
        assert store.request_cancel(s, sweep_id=b.id) == CancelOutcome.requested
        assert store.get_sweep(s, sweep_id=b.id).status == "running"  # the runner ends it
        assert store.finish_sweep(s, sweep_id=b.id, status=SweepStatus.cancelled)
        assert not store.finish_sweep(s, sweep_id=b.id, status=SweepStatus.failed)  # ended
        assert store.request_cancel(s, sweep_id=b.id) == CancelOutcome.finished
        assert store.request_cancel(s, sweep_id="0" * 32) == CancelOutcome.not_found


def test_upgrade_from_first_revision_keeps_sweeps(db_url):
    """A database made by revision 0001 (before cancel requests existed) keeps its rows."""
    url = _pg(db_url)
    engine = store.make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS sweeps"))
        conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
    store.upgrade_to_head(url, "0001")
    assert store.current_revision(engine) == "0001"
    columns = {c["name"] for c in sa.inspect(engine).get_columns("sweeps")}
    assert "cancel_requested" not in columns
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO sweeps (id, name, status, executor, spec, created_at, attempts)"
                " VALUES (:id, :name, :status, 'ray', :spec, :created, 1)"
            ),
            [
                {"id": "a" * 32, "name": "old-done", "status": "succeeded", "spec": json.dumps({"n": 1}), "created": datetime(2026, 1, 1)},
                {"id": "b" * 32, "name": "old-queued", "status": "queued", "spec": json.dumps({"n": 2}), "created": datetime(2026, 1, 2)},
            ],
        )  # fmt: skip

    store.upgrade_to_head(url)
    assert store.current_revision(engine) == store.head_revision() == "0002"
    with store.session_factory(engine)() as s:
        items, total = store.list_sweeps(s)
        assert total == 2 and [i.name for i in items] == ["old-queued", "old-done"]
        assert [i.spec for i in items] == [{"n": 2}, {"n": 1}]
        assert all(i.cancel_requested is False for i in items)
        # and the new column works on the old rows
        assert store.request_cancel(s, sweep_id="b" * 32) == CancelOutcome.cancelled
    engine.dispose()
