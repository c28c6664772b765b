"""The background writer: every MLflow write of a sweep after the parent run's creation.

One thread drains a queue in cycles and merges what piled up for the same run into one
`log_batch` call (chunked to MLflow's limits), or one bulk SQL transaction (sql.py). A store
call costs far more than the data it carries (tens of ms per `log_batch` on SQLite), so when
the sweep reports faster than the store writes, batches simply grow instead of the queue.
SQLite sees a single writer (several writers give "database is locked").
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from sweeps.tracking.naming import (
    MAX_ENTITIES_PER_CALL,
    MAX_METRICS_PER_CALL,
    MAX_PARAMS_PER_CALL,
    MAX_TAGS_PER_CALL,
)
from sweeps.tracking.sql import bulk_writer_for

log = logging.getLogger(__name__)

RETRIES = 3
BACKOFF_S = 0.5
MAX_DELAY_S = 5.0  # longest queued metrics wait to be merged with later ones while busy
# With bulk writes a write costs about the same for 1 point per lane as for 10 (the latest
# values are upserted per write), so metrics wait this long for company even when idle.
BULK_WAIT_S = 2.0
# Errors worth another try: a busy SQLite file, a dropped connection, an overloaded server.
_TRANSIENT = (
    "database is locked",
    "database is busy",
    "connection",
    "timed out",
    "timeout",
    "temporarily unavailable",
    "too many requests",
    "server closed",
)

RunKey = str | int  # "parent" or a lane index; resolved to a run id when written
PARENT = "parent"


class TrackingError(RuntimeError):
    """The background writer could not write to MLflow."""


@dataclass
class Batch:
    """Metrics/params/tags for one run; `done` callbacks run once they are written."""

    run: RunKey
    metrics: list[Metric] = field(default_factory=list)
    params: list[Param] = field(default_factory=list)
    tags: list[RunTag] = field(default_factory=list)
    done: list[Callable[[], None]] = field(default_factory=list)

    def absorb(self, other: Batch) -> None:
        self.metrics += other.metrics
        self.params += other.params
        self.tags += other.tags
        self.done += other.done


@dataclass
class Call:
    """Any other store call on one run (create it, end it, upload artifacts)."""

    run: RunKey
    fn: Callable[[MlflowClient], None]
    what: str


@dataclass
class Create:
    """Create these runs (name, tags) in an experiment; `created(key, run_id)` for each one,
    then `done()` once (the caller saves their ids)."""

    experiment_id: str
    runs: list[tuple[RunKey, str, dict[str, str]]]
    created: Callable[[RunKey, str], None]
    done: Callable[[], None]


@dataclass
class End:
    """End these runs with `status` (after their pending batches are written)."""

    runs: list[RunKey]
    status: str
    ended: Callable[[RunKey], None]


@dataclass
class Flush:
    event: threading.Event


_STOP = object()


class Writer:
    """One daemon thread owning every background MLflow write of a sweep.

    Errors never kill the thread: a failed write is recorded (the first one is re-raised by
    `flush`) and later writes still go ahead, so a sweep can still end its runs cleanly. Except
    when the store is unreachable (a transient error that outlived its retries): then later
    writes are dropped instead of each waiting out its own retries; `close_stale_runs` can end
    the runs once the store is back.
    """

    def __init__(
        self,
        client: MlflowClient,
        resolve: Callable[[RunKey], str],
        after_cycle: Callable[[], None],
        tries: int = RETRIES,
    ):
        self._client = client
        self._resolve = resolve
        self._after_cycle = after_cycle
        self.tries = tries
        self._queue: queue.Queue[Any] = queue.Queue()
        self._error: BaseException | None = None
        self._error_what = ""
        self._unreachable = False
        self.dropped = 0  # writes skipped because the store was unreachable
        self.seconds = 0.0  # time spent inside MLflow calls
        self.calls = 0
        # Batches wait here, merged per run, while the writer is busy (with other runs'
        # batches, creating or ending runs): the slower the store, the bigger each call.
        self._pending: dict[RunKey, Batch] = {}
        self._metrics_since: float | None = None  # when the oldest pending metrics arrived
        self._bulk = bulk_writer_for(client)
        self._thread = threading.Thread(target=self._loop, name="goldilocks-mlflow", daemon=True)
        self._thread.start()

    def put(self, op: Batch | Call | Create | End) -> None:
        if not self._thread.is_alive():
            raise TrackingError("the MLflow writer is stopped")
        self._queue.put(op)

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until everything queued so far is written; raise the first write error."""
        if self._thread.is_alive():
            done = threading.Event()
            self._queue.put(Flush(done))
            if not done.wait(timeout):
                raise TrackingError(f"MLflow writes did not finish within {timeout:g} s")
        self.raise_error()

    def raise_error(self) -> None:
        if self._error is not None:
            raise TrackingError(f"MLflow write failed ({self._error_what})") from self._error

    def stop(self, timeout: float = 60.0) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def call(self, fn: Callable[..., Any], *args: Any, what: str, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return with_retries(fn, *args, what=what, tries=self.tries, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1

    def _loop(self) -> None:
        while True:
            try:
                ops = [self._queue.get(timeout=self._wait_s())]
            except queue.Empty:
                ops = []
            while True:  # everything already waiting
                try:
                    ops.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if self._run_ops(ops):
                return
            # Write when idle, or when metrics have waited long enough (params and tags alone
            # may wait for company: nobody watches them arrive).
            since = self._metrics_since
            waited = 0.0 if since is None else time.monotonic() - since
            if (self._queue.empty() and self._wait_s() == 0.0) or waited > MAX_DELAY_S:
                self._write_pending()
            try:  # the state file is ours, not MLflow's: saved even when the store is down
                self._after_cycle()
            except OSError as err:
                log.error("could not save the tracking state: %s", err)

    def _wait_s(self) -> float | None:
        """How long the next queue read may wait: None (for ever) when nothing is pending;
        0 when pending writes are due; with bulk writes, until the metrics are BULK_WAIT_S old."""
        if not self._pending:
            return None
        if self._bulk is None or self._metrics_since is None:
            return 0.0
        return max(0.0, self._metrics_since + BULK_WAIT_S - time.monotonic())

    def _run_ops(self, ops: list[Any]) -> bool:
        """Run ops in queue order per run; return True on stop.

        A call on run k first writes k's pending batch (so a run is created before its params
        are written and ends after its last metrics); other runs' batches keep growing.
        Flush and stop write everything.
        """
        for op in ops:
            if isinstance(op, Batch):
                if op.metrics and self._metrics_since is None:
                    self._metrics_since = time.monotonic()
                if op.run in self._pending:
                    self._pending[op.run].absorb(op)
                else:
                    self._pending[op.run] = Batch(
                        op.run, [*op.metrics], [*op.params], [*op.tags], [*op.done]
                    )
            elif isinstance(op, Call):
                self._write_pending_of([op.run])
                self._guard(op.what, lambda op=op: self.call(op.fn, self._client, what=op.what))
            elif isinstance(op, Create):
                self._create_runs(op)
                op.done()
            elif isinstance(op, End):
                self._write_pending_of(op.runs)
                self._end_runs(op)
            else:
                self._write_pending()
                if isinstance(op, Flush):
                    op.event.set()
                elif op is _STOP:
                    return True
        return False

    def _write_pending_of(self, runs: list[RunKey]) -> None:
        """Write these runs' pending batches (with the bulk writer: everyone's, in one go)."""
        if self._bulk is not None:
            if any(run in self._pending for run in runs):
                self._write_pending()
            return
        self._write_batches([self._pending.pop(r) for r in runs if r in self._pending])

    def _create_runs(self, op: Create) -> None:
        """All of them in one transaction where the store allows (creating 256 runs one by one
        was 60 % of a wide sweep's MLflow time), else one `create_run` each."""
        if self._bulk is not None and not self._unreachable:
            runs = [(name, tags) for _, name, tags in op.runs]
            try:
                ids = self.call(
                    self._bulk.create_runs, op.experiment_id, runs, what="bulk create runs"
                )
            except Exception as err:
                log.warning("bulk MLflow run creation failed (%s); using create_run", err)
                self._bulk = None
            else:
                for (key, _, _), run_id in zip(op.runs, ids, strict=True):
                    op.created(key, run_id)
                return
        for key, name, tags in op.runs:
            what = f"create run for lane {key}"
            self._guard(
                what,
                lambda key=key, name=name, tags=tags, what=what: op.created(
                    key,
                    self.call(
                        self._client.create_run,
                        op.experiment_id,
                        run_name=name,
                        tags=tags,
                        what=what,
                    ).info.run_id,
                ),
            )

    def _end_runs(self, op: End) -> None:
        if self._bulk is not None and not self._unreachable:
            try:
                run_ids = [self._resolve(run) for run in op.runs]
                self.call(self._bulk.end_runs, run_ids, op.status, what="bulk end runs")
            except Exception as err:
                log.warning("bulk MLflow run ending failed (%s); using set_terminated", err)
                self._bulk = None
            else:
                for run in op.runs:
                    op.ended(run)
                return
        for run in op.runs:
            what = f"end run {run} {op.status}"
            if self._guard(
                what,
                lambda run=run, what=what: self.call(
                    self._client.set_terminated, self._resolve(run), status=op.status, what=what
                ),
            ):
                op.ended(run)

    def _write_pending(self) -> None:
        batches, self._pending, self._metrics_since = list(self._pending.values()), {}, None
        self._write_batches(batches)

    def _write_batches(self, batches: Iterable[Batch]) -> None:
        batches = list(batches)
        if batches and self._bulk is not None and self._write_bulk(batches):
            return
        for batch in batches:
            what = f"log_batch for run {batch.run}"
            if self._guard(what, lambda b=batch: self._write_batch(b)):
                for callback in batch.done:
                    callback()

    def _write_bulk(self, batches: list[Batch]) -> bool:
        """Every batch in one transaction (see tracking_sql); False: write them one by one."""
        if self._unreachable:
            return False
        try:
            rows = {self._resolve(b.run): (b.metrics, b.params, b.tags) for b in batches}
            self.call(self._bulk.write, rows, what="bulk write")
        except Exception as err:
            # Whatever went wrong (a store that is down, tables that changed), log_batch is
            # the judge: it writes what it can and reports what it cannot, as always.
            log.warning("bulk MLflow write failed (%s); using log_batch from now on", err)
            self._bulk = None
            return False
        for batch in batches:
            for callback in batch.done:
                callback()
        return True

    def _write_batch(self, batch: Batch) -> None:
        run_id = self._resolve(batch.run)
        for metrics, params, tags in chunks(batch.metrics, batch.params, batch.tags):
            # synchronous=True: MLflow's own async logging (MLFLOW_ENABLE_ASYNC_LOGGING) would
            # hide errors from us and add a second queue.
            self.call(
                self._client.log_batch,
                run_id,
                metrics=metrics,
                params=params,
                tags=tags,
                synchronous=True,
                what="log_batch",
            )

    def _guard(self, what: str, fn: Callable[[], None]) -> bool:
        """Run one write; record (never raise) its error. False if it failed or was dropped."""
        if self._unreachable:
            self.dropped += 1
            return False
        try:
            fn()
            return True
        except Exception as err:
            if self._error is None:
                log.error("MLflow %s failed: %s", what, err)
                self._error, self._error_what = err, what
            else:  # one loud message is enough
                log.debug("MLflow %s failed: %s", what, err)
            if is_transient(err):
                self._unreachable = True
                log.error("MLflow store unreachable: dropping further writes of this sweep")
            return False


def chunks(
    metrics: list[Metric], params: list[Param], tags: list[RunTag]
) -> Iterator[tuple[list[Metric], list[Param], list[RunTag]]]:
    """Split into log_batch calls within MLflow's per-call limits."""
    m = p = t = 0
    while True:
        ps = params[p : p + MAX_PARAMS_PER_CALL]
        ts = tags[t : t + MAX_TAGS_PER_CALL]
        room = min(MAX_METRICS_PER_CALL, MAX_ENTITIES_PER_CALL - len(ps) - len(ts))
        ms = metrics[m : m + room]
        if not (ms or ps or ts):
            return
        yield ms, ps, ts
        m, p, t = m + len(ms), p + len(ps), t + len(ts)


def with_retries(
    fn: Callable[..., Any], *args: Any, what: str, tries: int = RETRIES, **kwargs: Any
) -> Any:
    """One store call, retried on transient errors with a short exponential backoff."""
    for attempt in range(tries):
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            if attempt == tries - 1 or not is_transient(err):
                raise
            log.warning("MLflow %s failed (%s); retrying", what, err)
            time.sleep(BACKOFF_S * 2**attempt)
    raise AssertionError("unreachable")


def is_transient(err: BaseException) -> bool:
    if isinstance(err, ConnectionError | TimeoutError):
        return True
    text = str(err).lower()
    return any(s in text for s in _TRANSIENT)
