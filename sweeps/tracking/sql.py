"""Bulk writes of many runs' metrics, params and tags straight into MLflow's SQL store.

Why this exists: a sweep logs a lot of small values (256 lanes x 51 eval points x 4 metrics
is 52,000 metric rows), and MLflow's `log_batch` costs about 0.4 ms per metric on SQLite (one
ORM object per row, a latest-metrics merge per call, one transaction per run): 20 s of a one
minute sweep, taken from the cores that train. Written as plain multi-row INSERTs, all runs of
a writer cycle in one transaction, a row costs about 0.04 ms (latest value included), and a
cycle pays for one commit instead of one per run.

It writes MLflow's own tables through MLflow's own table definitions and engine, exactly the
rows `log_batch` would write (`metrics`, `latest_metrics`, `params`, `tags`), and only for the
SQL stores MLflow builds itself (SQLite and PostgreSQL). Anything else, an HTTP tracking server
included, gets None from `bulk_writer_for` and goes through `log_batch`. If a bulk write fails
for any reason the tracker falls back to `log_batch` for good, so an MLflow upgrade that
changes these tables costs speed, never data. Tests read everything back through
`MlflowClient`.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

_DIALECTS = ("sqlite", "postgresql")
# The runs table as `create_run` fills it (MLflow 3.x): a bulk creation writes every column.
RUN_COLUMNS = {
    "run_uuid", "name", "source_type", "source_name", "entry_point_name", "user_id", "status",
    "start_time", "end_time", "deleted_time", "source_version", "lifecycle_stage",
    "artifact_uri", "experiment_id",
}  # fmt: skip


class BulkWriter:
    """Writes `{run_id: (metrics, params, tags)}` for many runs in one transaction."""

    def __init__(self, engine: Any, tables: dict[str, Any], dialect: str):
        self._engine = engine
        self._tables = tables
        self._dialect = dialect

    def write(self, batches: dict[str, tuple[list[Metric], list[Param], list[RunTag]]]) -> None:
        """Insert every row, or none (one transaction). Raises if a run is not active."""
        t = self._tables
        metric_rows = [
            {
                "key": m.key,
                "value": float(m.value),
                "timestamp": int(m.timestamp),
                "step": int(m.step),
                "is_nan": False,  # the tracker never logs NaN/inf
                "run_uuid": run_id,
            }
            for run_id, (metrics, _, _) in batches.items()
            for m in metrics
        ]
        param_rows = [
            {"key": p.key, "value": p.value, "run_uuid": run_id}
            for run_id, (_, params, _) in batches.items()
            for p in params
        ]
        tag_rows = [
            {"key": tag.key, "value": tag.value, "run_uuid": run_id}
            for run_id, (_, _, tags) in batches.items()
            for tag in tags
        ]
        with self._transaction(list(batches)) as conn:
            if metric_rows:
                # A point logged again (a crash between the write and the state file) is
                # already there: skipped, as MLflow's log_batch skips exact duplicates.
                conn.execute(self._insert(t["metrics"]).on_conflict_do_nothing(), metric_rows)
                self._update_latest(conn, metric_rows)
            if param_rows:
                conn.execute(self._insert(t["params"]).on_conflict_do_nothing(), param_rows)
            if tag_rows:
                stmt = self._insert(t["tags"])
                stmt = stmt.on_conflict_do_update(
                    index_elements=["key", "run_uuid"], set_={"value": stmt.excluded.value}
                )
                conn.execute(stmt, _last_per_key(tag_rows))

    def create_runs(self, experiment_id: str, runs: list[tuple[str, dict[str, str]]]) -> list[str]:
        """What `MlflowClient.create_run(experiment_id, run_name=name, tags=tags)` does, for
        many runs in one transaction: RUNNING runs with their tags and `mlflow.runName`, an
        artifact folder under the experiment's. Returns their ids, in order."""
        from mlflow.utils.uri import append_to_uri_path
        from sqlalchemy import select, text

        t = self._tables
        experiments = t["experiments"]
        now = int(time.time() * 1000)
        with self._engine.begin() as conn:
            if self._dialect == "sqlite":
                conn.execute(text("PRAGMA busy_timeout = 20000"))
            found = conn.execute(
                select(experiments.c.artifact_location).where(
                    experiments.c.experiment_id == int(experiment_id),
                    experiments.c.lifecycle_stage == "active",
                )
            ).first()
            if found is None:
                raise MlflowException(f"experiment {experiment_id} not found or not active")
            ids = [uuid.uuid4().hex for _ in runs]
            run_rows = [
                {
                    "run_uuid": run_id,
                    "name": name,
                    "source_type": "UNKNOWN",
                    "source_name": "",
                    "entry_point_name": "",
                    "user_id": tags.get("mlflow.user", "unknown"),
                    "status": "RUNNING",
                    "start_time": now,
                    "end_time": None,
                    "deleted_time": None,
                    "source_version": "",
                    "lifecycle_stage": "active",
                    "artifact_uri": append_to_uri_path(found[0], run_id, "artifacts"),
                    "experiment_id": int(experiment_id),
                }
                for run_id, (name, tags) in zip(ids, runs, strict=True)
            ]
            tag_rows = [
                {"key": key, "value": value, "run_uuid": run_id}
                for run_id, (name, tags) in zip(ids, runs, strict=True)
                for key, value in {"mlflow.runName": name, **tags}.items()
            ]
            conn.execute(t["runs"].insert(), run_rows)
            conn.execute(t["tags"].insert(), tag_rows)
        return ids

    def end_runs(self, run_ids: list[str], status: str) -> None:
        """What `set_terminated` does (status, end time), for many runs in one statement."""
        status = RunStatus.to_string(RunStatus.from_string(status))
        runs = self._tables["runs"]
        with self._transaction(run_ids) as conn:
            conn.execute(
                runs.update()
                .where(runs.c.run_uuid.in_(run_ids))
                .values(status=status, end_time=int(time.time() * 1000))
            )

    # ---- internals

    @contextlib.contextmanager
    def _transaction(self, run_ids: list[str]) -> Iterator[Any]:
        """One transaction on runs that must all exist and be active (else it raises)."""
        from sqlalchemy import text

        with self._engine.begin() as conn:
            if self._dialect == "sqlite":  # as MLflow's own sessions: wait for a busy reader
                conn.execute(text("PRAGMA busy_timeout = 20000"))
            self._check_active(conn, run_ids)
            yield conn

    def _insert(self, table: Any) -> Any:
        if self._dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        return insert(table)

    def _check_active(self, conn: Any, run_ids: list[str]) -> None:
        from sqlalchemy import select

        runs = self._tables["runs"]
        query = select(runs.c.run_uuid).where(
            runs.c.run_uuid.in_(run_ids), runs.c.lifecycle_stage == "active"
        )
        missing = set(run_ids) - {row[0] for row in conn.execute(query)}
        if missing:
            raise MlflowException(f"runs not found or not active: {sorted(missing)}")

    def _update_latest(self, conn: Any, rows: list[dict]) -> None:
        """latest_metrics holds, per run and key, the row with the largest (step, timestamp,
        value): the value the MLflow UI's runs table shows. One upsert that only overwrites
        an older row (row-value comparison: SQLite >= 3.15 and PostgreSQL)."""
        from sqlalchemy import tuple_

        latest = self._tables["latest_metrics"]
        newest: dict[tuple[str, str], dict] = {}
        for row in rows:
            k = (row["run_uuid"], row["key"])
            if k not in newest or _order(row) > _order(newest[k]):
                newest[k] = row
        stmt = self._insert(latest)
        new = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=["key", "run_uuid"],
            set_={"value": new.value, "timestamp": new.timestamp, "step": new.step,
                  "is_nan": new.is_nan},
            where=tuple_(new.step, new.timestamp, new.value)
            > tuple_(latest.c.step, latest.c.timestamp, latest.c.value),
        )  # fmt: skip
        conn.execute(stmt, list(newest.values()))


def _order(row: dict) -> tuple:
    return (row["step"], row["timestamp"], row["value"])


def _last_per_key(rows: Iterable[dict]) -> list[dict]:
    """One row per (run, key), the last given: one statement cannot upsert a row twice."""
    return list({(r["run_uuid"], r["key"]): r for r in rows}.values())


def _sync_at_checkpoints(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def _use_wal(engine: Any) -> None:
    """Write-ahead logging, synced at checkpoints rather than at every commit.

    Each of a sweep's few hundred `create_run` calls is its own transaction, and with SQLite's
    default rollback journal each commit waits for the disk twice; in WAL mode with
    synchronous=NORMAL it does not wait at all, and a reader (`mlflow ui` on the same file)
    no longer blocks the writer. A committed write survives a crash of this process; only an
    operating-system crash or power cut can take back the last commits, never corrupt the file.
    WAL is a property of the database file and stays on (SQLite's tools handle it: the
    `-wal` and `-shm` files next to the database are part of it).
    """
    from sqlalchemy import event, text

    if not event.contains(engine, "connect", _sync_at_checkpoints):
        event.listen(engine, "connect", _sync_at_checkpoints)
    with engine.begin() as conn:
        conn.execute(text("PRAGMA journal_mode = WAL"))
    engine.dispose()  # pooled connections reopen with the pragma above


def bulk_writer_for(client: MlflowClient) -> BulkWriter | None:
    """A BulkWriter for the client's store when it is MLflow's SQLite/PostgreSQL store."""
    try:
        from mlflow.store.tracking.dbmodels.models import (
            SqlExperiment,
            SqlLatestMetric,
            SqlMetric,
            SqlParam,
            SqlRun,
            SqlTag,
        )
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = client._tracking_client.store
        if not isinstance(store, SqlAlchemyStore):
            return None
        engine = store.engine
        dialect = engine.dialect.name
        if dialect not in _DIALECTS:
            return None
        tables = {
            "experiments": SqlExperiment.__table__,
            "metrics": SqlMetric.__table__,
            "latest_metrics": SqlLatestMetric.__table__,
            "params": SqlParam.__table__,
            "tags": SqlTag.__table__,
            "runs": SqlRun.__table__,
        }
        expected = {
            "metrics": {"key", "value", "timestamp", "step", "is_nan", "run_uuid"},
            "latest_metrics": {"key", "value", "timestamp", "step", "is_nan", "run_uuid"},
            "params": {"key", "value", "run_uuid"},
            "tags": {"key", "value", "run_uuid"},
        }
        if {c.name for c in tables["runs"].columns} != RUN_COLUMNS or not {
            "experiment_id",
            "artifact_location",
            "lifecycle_stage",
        } <= {c.name for c in tables["experiments"].columns}:
            log.info("MLflow's runs table changed; logging through log_batch")
            return None
        for name, columns in expected.items():
            if {c.name for c in tables[name].columns} != columns:
                log.info("MLflow's %s table changed; logging through log_batch", name)
                return None
        if dialect == "sqlite":
            _use_wal(engine)
        return BulkWriter(engine, tables, dialect)
    except Exception as err:  # an MLflow without these internals: the public API it is
        log.info("bulk MLflow writes unavailable (%s); logging through log_batch", err)
        return None
