"""sweeps.tracking.sql: bulk writes must leave MLflow's store exactly as log_batch leaves it.

Checked on real stores (a SQLite file and a PostgreSQL database), read back only through
MlflowClient's public API, against the same values written with MlflowClient.log_batch.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from testlib import pg_admin_url, postgres_database

from sweeps.tracking import sql as tracking_sql
from sweeps.tracking.sql import BulkWriter, bulk_writer_for


@pytest.fixture(scope="module")
def postgres_uri() -> Iterator[str]:
    admin = pg_admin_url()
    if admin is None:
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    with postgres_database(admin) as uri:
        MlflowClient(tracking_uri=uri).search_experiments()  # migrate once
        yield uri


@pytest.fixture(scope="module")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bulk-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def client(request, tmp_path: Path, migrated_sqlite: Path) -> MlflowClient:
    if request.param == "postgresql":
        return MlflowClient(tracking_uri=request.getfixturevalue("postgres_uri"))
    shutil.copy(migrated_sqlite, tmp_path / "mlflow.db")
    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def _experiment(client: MlflowClient, request: pytest.FixtureRequest) -> str:
    return client.create_experiment(f"bulk-{request.node.name}-{id(client)}")


# Out of order on purpose: the latest value is the one at the largest step, not the last sent.
BATCHES = [
    [Metric("val_loss", 0.9, 1000, 10), Metric("val_loss", 1.2, 1000, 0)],
    [Metric("val_loss", 0.5, 2000, 30), Metric("val_loss", 0.7, 1500, 20), Metric("lr", 0.1, 1, 0)],
    [Metric("val_loss", 0.6, 900, 25)],  # older than step 30: must not become the latest
]
PARAMS = [Param("learning_rate", "0.01"), Param("optimizer", "adam")]


def _snapshot(client: MlflowClient, run_id: str) -> dict:
    run = client.get_run(run_id)
    return {
        "history": {
            key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
            for key in ("val_loss", "lr")
        },
        "latest": run.data.metrics,
        "params": run.data.params,
        "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
        "status": run.info.status,
    }


def test_bulk_writes_equal_log_batch(client: MlflowClient, request: pytest.FixtureRequest):
    writer = bulk_writer_for(client)
    assert isinstance(writer, BulkWriter)
    exp = _experiment(client, request)
    reference = client.create_run(exp).info.run_id
    bulk = [client.create_run(exp).info.run_id for _ in range(3)]  # many runs per transaction

    for i, metrics in enumerate(BATCHES):
        params = PARAMS if i == 0 else []
        tags = [RunTag("status", f"s{i}")]
        client.log_batch(reference, metrics=metrics, params=params, tags=tags, synchronous=True)
        writer.write({run: (metrics, params, tags) for run in bulk})
    # the same point again (a crash between the write and the state file): no duplicate
    writer.write({run: (BATCHES[0], PARAMS, []) for run in bulk})
    client.set_terminated(reference, status="FINISHED")
    writer.end_runs(bulk, "FINISHED")

    expected = _snapshot(client, reference)
    assert expected["latest"] == {"val_loss": 0.5, "lr": 0.1}
    assert expected["tags"] == {"status": "s2"}
    for run in bulk:
        assert _snapshot(client, run) == expected
        assert client.get_run(run).info.end_time >= client.get_run(run).info.start_time


def test_bulk_created_runs_equal_create_run(client: MlflowClient, request):
    """Runs created in one transaction read back as `create_run`'s do: name, tags, status,
    user, artifact folder, experiment; and the parent/child link the MLflow UI nests by."""
    writer = bulk_writer_for(client)
    exp = _experiment(client, request)
    parent = client.create_run(exp, run_name="sweep").info.run_id
    tags = {"mlflow.parentRunId": parent, "goldilocks.lane": "0"}
    reference = client.create_run(exp, run_name="adam-lr1e-03", tags=tags)
    ids = writer.create_runs(exp, [("adam-lr1e-03", tags), ("adam-lr1e-02", tags)])
    assert len(set(ids)) == 2 and reference.info.run_id not in ids

    def fields(run_id: str) -> dict:
        run = client.get_run(run_id)
        info = run.info
        return {
            "status": info.status, "user": info.user_id, "stage": info.lifecycle_stage,
            "experiment": info.experiment_id, "end": info.end_time, "tags": run.data.tags,
            "artifacts": info.artifact_uri.replace(run_id, "<id>"),
        }  # fmt: skip

    expected = fields(reference.info.run_id)
    assert fields(ids[0]) == expected
    assert client.get_run(ids[1]).info.run_name == "adam-lr1e-02"
    assert client.get_run(ids[0]).info.start_time > 0
    children = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent}'")
    assert {r.info.run_id for r in children} == {reference.info.run_id, *ids}
    writer.write({run: (BATCHES[0], PARAMS, []) for run in ids})  # writable like any run
    client.delete_experiment(exp)
    with pytest.raises(MlflowException, match="not active"):
        writer.create_runs(exp, [("late", {})])


def test_a_deleted_run_fails_the_whole_write(client: MlflowClient, request):
    writer = bulk_writer_for(client)
    exp = _experiment(client, request)
    alive, deleted = (client.create_run(exp).info.run_id for _ in range(2))
    client.delete_run(deleted)
    with pytest.raises(MlflowException, match="not active"):
        writer.write({alive: (BATCHES[0], [], []), deleted: (BATCHES[0], [], [])})
    assert client.get_metric_history(alive, "val_loss") == []  # one transaction: nothing kept
    with pytest.raises(MlflowException, match="not active"):
        writer.end_runs([alive, deleted], "FINISHED")
    assert client.get_run(alive).info.status == "RUNNING"


def test_a_tracking_server_gets_no_bulk_writer():
    assert bulk_writer_for(MlflowClient(tracking_uri="http://127.0.0.1:9")) is None


def test_a_changed_table_turns_bulk_writes_off(client: MlflowClient, monkeypatch):
    from mlflow.store.tracking.dbmodels.models import SqlMetric

    monkeypatch.setattr(SqlMetric, "__table__", SqlMetric.__table__.to_metadata(_fresh()))
    SqlMetric.__table__.append_column(_column("dataset_uuid"))
    assert tracking_sql.bulk_writer_for(client) is None


def _fresh():
    from sqlalchemy import MetaData

    return MetaData()


def _column(name: str):
    from sqlalchemy import Column, String

    return Column(name, String(36))


# --------------------------------------------------------------------------- in the tracker


def _writer_round(client: MlflowClient, request, monkeypatch, bulk_write) -> tuple[list, object]:
    """Three runs' batches through the tracker's writer; returns (run ids, writer)."""
    from sweeps.tracking.writer import Batch, Writer

    monkeypatch.setattr(BulkWriter, "write", bulk_write)
    exp = _experiment(client, request)
    runs = [client.create_run(exp).info.run_id for _ in range(3)]
    writer = Writer(client, lambda key: runs[key], lambda: None)
    for i in range(3):
        for metrics in BATCHES:
            writer.put(Batch(i, metrics=list(metrics), params=[]))
    writer.flush()
    writer.stop()
    return runs, writer


def test_the_writer_writes_through_bulk_writes(client, request, monkeypatch):
    calls = []
    original = BulkWriter.write

    def counting(self, rows):
        calls.append(len(rows))
        return original(self, rows)

    monkeypatch.setattr(client, "log_batch", lambda *a, **k: pytest.fail("log_batch used"))
    runs, writer = _writer_round(client, request, monkeypatch, counting)
    writer.raise_error()
    assert writer._bulk is not None and sum(calls) >= 3  # every run, by bulk writes only
    for run in runs:
        assert client.get_run(run).data.metrics == {"val_loss": 0.5, "lr": 0.1}


def test_a_failing_bulk_write_falls_back_to_log_batch(client, request, monkeypatch):
    def broken(self, rows):
        raise RuntimeError("a column MLflow renamed")

    runs, writer = _writer_round(client, request, monkeypatch, broken)
    assert writer._bulk is None  # off for good
    writer.raise_error()  # and no write was lost: log_batch wrote everything
    for run in runs:
        history = client.get_metric_history(run, "val_loss")
        assert sorted(m.step for m in history) == [0, 10, 20, 25, 30]


def test_a_sqlite_store_is_switched_to_wal_once(tmp_path: Path, migrated_sqlite: Path):
    import sqlite3

    from sqlalchemy import event

    shutil.copy(migrated_sqlite, tmp_path / "mlflow.db")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    for _ in range(2):  # one tracker after another in the same process
        assert bulk_writer_for(client) is not None
    with sqlite3.connect(tmp_path / "mlflow.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    engine = client._tracking_client.store.engine
    assert event.contains(engine, "connect", tracking_sql._sync_at_checkpoints)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
