"""The job store: one `sweeps` table (SQLite by default, PostgreSQL in production).

The table is the service's memory across restarts: Ray's own job metadata lives in the head
node and goes when it does (FIELD-NOTES), and a driver's folder says how the sweep went but
not that it was ever queued. Functions take the session first and keyword-only arguments;
status changes are compare-and-set (`UPDATE ... WHERE status = ...`), so the API and the
runner thread never overwrite each other's decision (a cancel racing a claim, say).

Schema changes go through alembic (service/migrations); `upgrade_to_head` runs at startup.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Engine,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    create_engine,
    event,
    false,
    func,
    select,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


class SweepStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


TERMINAL = frozenset({SweepStatus.succeeded, SweepStatus.failed, SweepStatus.cancelled})


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC in Python on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the job store; use utcnow()")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Sweep(Base):
    __tablename__ = "sweeps"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    executor: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict] = mapped_column(JSON)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    body_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    tracking_uri: Mapped[str | None] = mapped_column(Text)
    experiment_id: Mapped[str | None] = mapped_column(String(64))
    parent_run_id: Mapped[str | None] = mapped_column(String(64))
    pid: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # revision 0002: a cancel of a running sweep is a request the runner carries out; kept in
    # the table so that a restart in between still ends the sweep cancelled, not resumed.
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    __table_args__ = (Index("ix_sweeps_created_at", "created_at"),)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


# --------------------------------------------------------------------------- engine


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1].split("?", 1)[0]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # API threads and the runner thread share the file: WAL lets readers run beside the
        # writer, and busy_timeout waits out a lock instead of failing at once.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def upgrade_to_head(database_url: str, revision: str = "head") -> None:
    """Bring the schema to `revision` (alembic); existing rows are kept."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["database_url"] = database_url  # not via the ini: '%' would be interpolated
    command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


# --------------------------------------------------------------------------- functions


def new_sweep_id() -> str:
    return uuid.uuid4().hex


def create_sweep(
    session: Session,
    *,
    name: str,
    spec: dict[str, Any],
    executor: str,
    idempotency_key: str | None = None,
    body_hash: str | None = None,
    sweep_id: str | None = None,
) -> Sweep:
    """Insert a queued sweep and commit. A duplicate idempotency key raises IntegrityError."""
    sweep = Sweep(
        id=sweep_id or new_sweep_id(),
        name=name,
        status=SweepStatus.queued,
        executor=executor,
        spec=spec,
        idempotency_key=idempotency_key,
        body_hash=body_hash,
        created_at=utcnow(),
        attempts=0,
        cancel_requested=False,
    )
    session.add(sweep)
    session.commit()
    return sweep


def get_sweep(session: Session, *, sweep_id: str) -> Sweep | None:
    return session.get(Sweep, sweep_id, populate_existing=True)


def get_by_idempotency_key(session: Session, *, key: str) -> Sweep | None:
    return session.scalars(select(Sweep).where(Sweep.idempotency_key == key)).first()


def list_sweeps(
    session: Session, *, status: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[Sequence[Sweep], int]:
    """A page of sweeps, newest first, and the total matching `status`."""
    query = select(Sweep)
    count = select(func.count()).select_from(Sweep)
    if status is not None:
        query = query.where(Sweep.status == status)
        count = count.where(Sweep.status == status)
    items = session.scalars(
        query.order_by(Sweep.created_at.desc(), Sweep.id.desc()).limit(limit).offset(offset)
    ).all()
    return items, session.scalar(count) or 0


def count_status(session: Session, *, status: str) -> int:
    return (
        session.scalar(select(func.count()).select_from(Sweep).where(Sweep.status == status)) or 0
    )


def sweeps_with_status(session: Session, *, status: str) -> Sequence[Sweep]:
    return session.scalars(
        select(Sweep).where(Sweep.status == status).order_by(Sweep.created_at, Sweep.id)
    ).all()


def claim_next_queued(session: Session) -> Sweep | None:
    """Move the oldest queued sweep to running (one attempt) and return it, or None.

    Compare-and-set on the status, so a cancel that got there first wins and a second runner
    on the same database could never start the same sweep twice.
    """
    while True:
        candidate = session.scalars(
            select(Sweep.id)
            .where(Sweep.status == SweepStatus.queued)
            .order_by(Sweep.created_at, Sweep.id)
            .limit(1)
        ).first()
        if candidate is None:
            return None
        claimed = session.execute(
            update(Sweep)
            .where(Sweep.id == candidate, Sweep.status == SweepStatus.queued)
            .values(status=SweepStatus.running, started_at=utcnow(), attempts=Sweep.attempts + 1)
        ).rowcount
        session.commit()
        if claimed:
            return get_sweep(session, sweep_id=candidate)


def start_attempt(session: Session, *, sweep_id: str) -> None:
    """Count another driver launch (a resume) of a running sweep."""
    session.execute(
        update(Sweep).where(Sweep.id == sweep_id).values(attempts=Sweep.attempts + 1, pid=None)
    )
    session.commit()


def refund_attempt(session: Session, *, sweep_id: str) -> None:
    """Do not count a launch whose driver the service itself stopped (a graceful shutdown)."""
    session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id, Sweep.attempts > 0)
        .values(attempts=Sweep.attempts - 1)
    )
    session.commit()


def record_driver(
    session: Session,
    *,
    sweep_id: str,
    pid: int | None = None,
    tracking_uri: str | None = None,
    experiment_id: str | None = None,
    parent_run_id: str | None = None,
) -> None:
    """Remember what a driver told us (its pid, its MLflow ids); None leaves a field as is."""
    values = {
        k: v
        for k, v in {
            "pid": pid,
            "tracking_uri": tracking_uri,
            "experiment_id": experiment_id,
            "parent_run_id": parent_run_id,
        }.items()
        if v is not None
    }
    if values:
        session.execute(update(Sweep).where(Sweep.id == sweep_id).values(**values))
        session.commit()


def finish_sweep(
    session: Session, *, sweep_id: str, status: SweepStatus, error: str | None = None
) -> bool:
    """Running (or queued) -> a terminal status; False if the sweep had already ended."""
    if status not in TERMINAL:
        raise ValueError(f"{status} is not a terminal status")
    done = session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id, Sweep.status.in_([SweepStatus.queued, SweepStatus.running]))
        .values(status=status, error=error, finished_at=utcnow())
    ).rowcount
    session.commit()
    return bool(done)


class CancelOutcome(StrEnum):
    not_found = "not_found"
    finished = "finished"  # already terminal: nothing to cancel
    cancelled = "cancelled"  # was queued: cancelled on the spot
    requested = "requested"  # running: the runner stops its driver


def request_cancel(session: Session, *, sweep_id: str) -> CancelOutcome:
    if session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id, Sweep.status == SweepStatus.queued)
        .values(
            status=SweepStatus.cancelled,
            cancel_requested=True,
            finished_at=utcnow(),
            error="cancelled while queued",
        )
    ).rowcount:
        session.commit()
        return CancelOutcome.cancelled
    requested = session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id, Sweep.status == SweepStatus.running)
        .values(cancel_requested=True)
    ).rowcount
    session.commit()
    if requested:
        return CancelOutcome.requested
    return (
        CancelOutcome.not_found
        if get_sweep(session, sweep_id=sweep_id) is None
        else (CancelOutcome.finished)
    )
