"""MLflow tracking for a sweep: one parent run per sweep, one child run per lane.

The only module that imports MLflow. Everything goes through `MlflowClient` with explicit run
ids (the fluent API keeps the active run on a thread-local stack), and every write after the
parent run's creation goes through one background thread (`_Writer`): training never waits on
the tracking store, and SQLite sees a single writer (several writers give "database is locked").

The writer drains its queue in cycles and merges what piled up for the same run into one
`log_batch` call (chunked to MLflow's limits). A store call costs far more than the data it
carries (tens of ms per `log_batch` on SQLite), so when the sweep reports faster than the store
writes, batches simply grow instead of the queue.

A small JSON state file next to the sweep's outputs maps lanes to run ids and records the last
step logged per lane, so a resumed sweep reuses its runs and never logs a point twice, and
`close_stale_runs` can end the runs of a process that died.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import re
import shlex
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from sweeps.plan import Lane
from sweeps.results import LaneResult
from sweeps.spec import SweepSpec, spec_to_json
from sweeps.tracking_sql import bulk_writer_for

log = logging.getLogger(__name__)

# With a tracking server, MlflowClient.set_terminated prints two "View run ... at" lines per run
# (and fetches the run to do it): hundreds of lines per sweep. The user can still opt back in.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

# MLflow's limits (mlflow.utils.validation), restated so a change upstream shows up here.
MAX_METRICS_PER_CALL = 1000
MAX_PARAMS_PER_CALL = 100
MAX_TAGS_PER_CALL = 100
MAX_ENTITIES_PER_CALL = 1000  # metrics + params + tags together
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000
MAX_KEY_LENGTH = 250
# Spec values longer than this are unreadable as params anyway; the full spec is spec.json.
SPEC_PARAM_LENGTH = 500

TAG_SWEEP_ID = "goldilocks.sweep_id"
TAG_KIND = "goldilocks.kind"  # "sweep" (parent) or "lane" (child)
TAG_TRIAL_ID = "goldilocks.trial_id"
TAG_LANE = "goldilocks.lane"
TAG_ERROR = "goldilocks.error"
TAG_STATUS = "status"  # the lane's verdict, short so that `tags.status = 'diverged'` reads well

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
_BAD_KEY_CHARS = re.compile(r"[^\w./\- :]")  # what MLflow accepts in metric/param/tag keys

RunKey = str | int  # "parent" or a lane index; resolved to a run id when written
PARENT = "parent"


EXPERIMENT_KIND_TAG = "mlflow.experimentKind"


class TrackingError(RuntimeError):
    """The background writer could not write to MLflow."""


# --------------------------------------------------------------------------- URIs


def resolve_tracking_uri(cli_value: str | None = None) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else ./mlflow.db; SQLite paths made absolute.

    Absolute, because the URI is printed for `mlflow ui` and handed to processes whose working
    directory may differ.
    """
    uri = cli_value or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    path = _sqlite_path(uri)
    if path is None:
        return uri
    _, sep, query = uri.partition("?")
    return f"sqlite:///{path}{sep}{query}"


def ui_command(tracking_uri: str) -> str:
    """How a user looks at the sweep: a local UI over a database, or the server's address."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {tracking_uri}"
    return f"mlflow ui --backend-store-uri {shlex.quote(tracking_uri)}"


def _sqlite_path(uri: str) -> Path | None:
    """The absolute database path of a file-backed SQLite URI, else None."""
    if not uri.startswith("sqlite:///") or uri.startswith("sqlite:///:memory:"):
        return None
    raw = uri[len("sqlite:///") :].split("?", 1)[0]  # four slashes (absolute) keep their "/"
    return Path(raw).expanduser().resolve()


# --------------------------------------------------------------------------- writer


@dataclass
class _Batch:
    """Metrics/params/tags for one run; `done` callbacks run once they are written."""

    run: RunKey
    metrics: list[Metric] = field(default_factory=list)
    params: list[Param] = field(default_factory=list)
    tags: list[RunTag] = field(default_factory=list)
    done: list[Callable[[], None]] = field(default_factory=list)

    def absorb(self, other: _Batch) -> None:
        self.metrics += other.metrics
        self.params += other.params
        self.tags += other.tags
        self.done += other.done


@dataclass
class _Call:
    """Any other store call on one run (create it, end it, upload artifacts)."""

    run: RunKey
    fn: Callable[[MlflowClient], None]
    what: str


@dataclass
class _End:
    """End these runs with `status` (after their pending batches are written)."""

    runs: list[RunKey]
    status: str
    ended: Callable[[RunKey], None]


@dataclass
class _Flush:
    event: threading.Event


_STOP = object()


class _Writer:
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
        self._pending: dict[RunKey, _Batch] = {}
        self._metrics_since: float | None = None  # when the oldest pending metrics arrived
        self._bulk = bulk_writer_for(client)
        self._thread = threading.Thread(target=self._loop, name="goldilocks-mlflow", daemon=True)
        self._thread.start()

    def put(self, op: _Batch | _Call) -> None:
        if not self._thread.is_alive():
            raise TrackingError("the MLflow writer is stopped")
        self._queue.put(op)

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until everything queued so far is written; raise the first write error."""
        if self._thread.is_alive():
            done = threading.Event()
            self._queue.put(_Flush(done))
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
            return _with_retries(fn, *args, what=what, tries=self.tries, **kwargs)
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
            if isinstance(op, _Batch):
                if op.metrics and self._metrics_since is None:
                    self._metrics_since = time.monotonic()
                if op.run in self._pending:
                    self._pending[op.run].absorb(op)
                else:
                    self._pending[op.run] = _Batch(
                        op.run, [*op.metrics], [*op.params], [*op.tags], [*op.done]
                    )
            elif isinstance(op, _Call):
                self._write_pending_of([op.run])
                self._guard(op.what, lambda op=op: self.call(op.fn, self._client, what=op.what))
            elif isinstance(op, _End):
                self._write_pending_of(op.runs)
                self._end_runs(op)
            else:
                self._write_pending()
                if isinstance(op, _Flush):
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

    def _end_runs(self, op: _End) -> None:
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

    def _write_batches(self, batches: Iterable[_Batch]) -> None:
        batches = list(batches)
        if batches and self._bulk is not None and self._write_bulk(batches):
            return
        for batch in batches:
            what = f"log_batch for run {batch.run}"
            if self._guard(what, lambda b=batch: self._write_batch(b)):
                for callback in batch.done:
                    callback()

    def _write_bulk(self, batches: list[_Batch]) -> bool:
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

    def _write_batch(self, batch: _Batch) -> None:
        run_id = self._resolve(batch.run)
        for metrics, params, tags in _chunks(batch.metrics, batch.params, batch.tags):
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
            if _is_transient(err):
                self._unreachable = True
                log.error("MLflow store unreachable: dropping further writes of this sweep")
            return False


def _chunks(
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


def _with_retries(
    fn: Callable[..., Any], *args: Any, what: str, tries: int = RETRIES, **kwargs: Any
) -> Any:
    """One store call, retried on transient errors with a short exponential backoff."""
    for attempt in range(tries):
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            if attempt == tries - 1 or not _is_transient(err):
                raise
            log.warning("MLflow %s failed (%s); retrying", what, err)
            time.sleep(BACKOFF_S * 2**attempt)
    raise AssertionError("unreachable")


def _is_transient(err: BaseException) -> bool:
    if isinstance(err, ConnectionError | TimeoutError):
        return True
    text = str(err).lower()
    return any(s in text for s in _TRANSIENT)


# --------------------------------------------------------------------------- tracker


class SweepTracker:
    """Logs one sweep to MLflow: `start`, then `log_progress` as often as wanted, then
    `finish` (success) or `close` (failure/cancellation).

    Only the experiment and the parent run are created synchronously (so a bad tracking URI
    fails the sweep at once); child runs are created by the writer, so `start` returns in
    milliseconds even for hundreds of lanes.
    """

    def __init__(self, tracking_uri: str, experiment: str, state_path: Path):
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.state_path = Path(state_path)
        self._client = MlflowClient(tracking_uri=tracking_uri)
        self._lock = threading.Lock()  # guards the state below (the writer updates it too)
        self._progress_lock = threading.Lock()  # executors may report from their own threads
        self._experiment_id: str | None = None
        self._parent_id: str | None = None
        self._runs: dict[int, str] = {}
        self._logged: dict[int, int] = {}  # last step written per lane (persisted)
        self._queued: dict[int, int] = {}  # last step handed to the writer (memory only)
        self._lanes: set[int] = set()  # every lane given to start()
        self._ended: set[RunKey] = set()
        self._closed = False
        self._dirty = False  # `_logged` moved since the state file was written
        self._sync_seconds = 0.0
        # MLflow's REST client already retries HTTP calls (MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        # 7 by default, with backoff): more tries on top would only multiply the wait.
        http = tracking_uri.startswith(("http://", "https://"))
        self._writer = _Writer(
            self._client, self._resolve, self._save_if_dirty, tries=1 if http else RETRIES
        )

    # ---- public API

    @property
    def info(self) -> dict[str, Any]:
        return {
            "tracking_uri": self.tracking_uri,
            "experiment_id": self._experiment_id,
            "parent_run_id": self._parent_id,
        }

    @property
    def log_seconds(self) -> float:
        """Seconds spent in MLflow calls (start's synchronous ones and the writer's)."""
        return self._sync_seconds + self._writer.seconds

    def run_id(self, lane_index: int) -> str:
        """The lane's child run id (waits for the writer if the run is not created yet)."""
        with self._lock:
            if lane_index in self._runs:
                return self._runs[lane_index]
        self._writer.flush()
        with self._lock:
            return self._runs[lane_index]

    def assign_run_ids(self, results: list[LaneResult]) -> None:
        """Set each result's `run_id` (before building the report, so it names the runs)."""
        for r in results:
            r.run_id = self.run_id(r.lane.index)

    def start(
        self, *, spec: SweepSpec, sweep_id: str, lanes: list[Lane], trial_of: dict[int, str]
    ) -> None:
        """Create (or, from the state file, reuse) the parent run and one child run per lane."""
        state = self._load_state()
        self._experiment_id = self._sync(self._get_or_create_experiment, spec.experiment)
        resumed = state is not None and self._can_resume(state)
        if resumed:
            self._parent_id = state["parent_run_id"]
            self._runs = {int(k): v for k, v in state.get("runs", {}).items()}
            self._logged = {int(k): int(v) for k, v in state.get("logged", {}).items()}
            self._queued = dict(self._logged)
            self._sync(self._client.update_run, self._parent_id, status="RUNNING")
            for key, run_id in self._runs.items():  # a finished or failed attempt runs again
                self._writer.put(
                    _Call(key, lambda c, r=run_id: c.update_run(r, status="RUNNING"), "resume run")
                )
        else:
            if state is not None:
                log.warning(
                    "ignoring %s: its runs are not in %s", self.state_path, self.tracking_uri
                )
            parent = self._sync(
                self._client.create_run,
                self._experiment_id,
                run_name=spec.name,
                tags={TAG_SWEEP_ID: sweep_id, TAG_KIND: "sweep"},
            )
            self._parent_id = parent.info.run_id
            spec_params = [
                Param(k, _truncate(v, SPEC_PARAM_LENGTH))
                for k, v in _flatten(spec.model_dump(mode="json"))
            ]
            self._writer.put(_Batch(PARENT, params=spec_params))
            self._writer.put(
                _Call(
                    PARENT,
                    partial(_log_text, self._parent_id, spec_to_json(spec), "spec.json"),
                    "log spec.json",
                )
            )
        self._save_state()

        names = _run_names(lanes)
        self._lanes = {lane.index for lane in lanes}
        for lane in lanes:
            if lane.index in self._runs:
                continue
            tags = {
                MLFLOW_PARENT_RUN_ID: self._parent_id,
                TAG_SWEEP_ID: sweep_id,
                TAG_KIND: "lane",
                TAG_TRIAL_ID: trial_of.get(lane.index, ""),
                TAG_LANE: str(lane.index),
            }
            self._writer.put(
                _Call(
                    lane.index,
                    partial(
                        self._create_child, index=lane.index, name=names[lane.index], tags=tags
                    ),
                    f"create run for lane {lane.index}",
                )
            )
            self._writer.put(_Batch(lane.index, params=_lane_params(spec, lane)))

    def log_progress(self, results: list[LaneResult]) -> None:
        """Queue every history point not logged yet (non-blocking; NaN/inf values skipped)."""
        with self._progress_lock:
            self._queue_progress(results)

    def _queue_progress(self, results: list[LaneResult]) -> None:
        now = _now_ms()
        for r in results:
            i = r.lane.index
            last = self._queued.get(i, -1)
            new = [k for k, step in enumerate(r.step) if step > last]
            if not new:
                continue
            if i not in self._lanes:
                raise KeyError(f"lane {i} was not given to start()")
            series = {
                "train_loss": r.train_loss,
                "val_loss": r.val_loss,
                f"val_{r.metric}": r.val_metric,
                "lr": r.learning_rate,
                **r.extra_metrics,
            }
            metrics = [
                Metric(_key(name), float(values[k]), now, int(r.step[k]))
                for k in new
                for name, values in series.items()
                if k < len(values) and _finite(values[k])
            ]
            top = int(r.step[new[-1]])
            self._queued[i] = top
            self._writer.put(
                _Batch(i, metrics=metrics, done=[lambda i=i, s=top: self._mark_logged(i, s)])
            )

    def finish(
        self, *, results: list[LaneResult], report: dict[str, Any], artifacts_dir: Path | None
    ) -> None:
        """Log the verdicts and report, end every run FINISHED, and wait until all is written.

        A diverged lane ends FINISHED too: divergence is a result, not a failure. A lane with
        no result (its trial was lost) ends FAILED. Sets each result's `run_id`.
        """
        self.log_progress(results)
        self._end_all(sorted(self._lanes - {r.lane.index for r in results}), "FAILED")
        now = _now_ms()
        for r in results:
            i = r.lane.index
            step = int(r.step[-1]) if r.step else 0
            summary = {
                "best_val_loss": r.best_val_loss,
                f"best_val_{r.metric}": r.best_val_metric,
                "final_train_loss": r.final_train_loss,
                "diverged_at_step": r.diverged_at_step,
            }
            metrics = [Metric(k, float(v), now, step) for k, v in summary.items() if _finite(v)]
            tags = [RunTag(TAG_STATUS, r.status)] if r.status else []
            self._writer.put(_Batch(i, metrics=metrics, tags=tags))
        self._end_all([r.lane.index for r in results], "FINISHED")

        metrics, tags = _report_metrics(report), _winner_tags(report.get("winner"))
        self._writer.put(
            _Batch(PARENT, metrics=[Metric(k, v, now, 0) for k, v in metrics], tags=tags)
        )
        parent = self._parent_id
        text = json.dumps(report, indent=1)
        self._writer.put(
            _Call(PARENT, partial(_log_text, parent, text, "report.json"), "log report.json")
        )
        if artifacts_dir is not None and Path(artifacts_dir).is_dir():
            folder = Path(artifacts_dir)
            # logged as a folder of the same name: <out>/plots -> plots/*.png
            self._writer.put(
                _Call(
                    PARENT,
                    lambda c: c.log_artifacts(parent, str(folder), folder.name),
                    "log artifacts",
                )
            )
        self._end_all([PARENT], "FINISHED")
        self._writer.flush(timeout=600)
        self.assign_run_ids(results)
        self._save_state()
        self._shutdown()

    def close(self, status: str, reason: str | None = None) -> None:
        """End every run still RUNNING with `status` (FAILED or KILLED). Idempotent; never raises
        for write errors (it runs on failure paths, where the original error matters more)."""
        if self._closed:
            return
        status = RunStatus.to_string(RunStatus.from_string(status))
        if self._parent_id is None:  # start() never got as far as a run
            self._shutdown()
            return
        if reason:
            self._writer.put(
                _Batch(PARENT, tags=[RunTag(TAG_ERROR, _truncate(reason, MAX_TAG_LENGTH))])
            )
        with self._lock:
            # lanes, not created runs: a child still queued for creation is ended after it
            keys: list[RunKey] = [k for k in sorted(self._lanes) if k not in self._ended]
        if PARENT not in self._ended:
            keys.append(PARENT)
        self._end_all(keys, status)
        try:
            self._writer.flush()
        except TrackingError as err:
            log.warning("closing the MLflow runs of %s: %s", self.state_path, err)
        self._save_state()
        self._shutdown()

    def flush(self, timeout: float = 60) -> None:
        """Block until everything queued is written; re-raise the writer's first error."""
        self._writer.flush(timeout)
        self._save_state()

    # ---- internals

    def _sync(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A store call on the caller's thread (only start() makes these)."""
        t0 = time.perf_counter()
        try:
            return _with_retries(
                fn, *args, what=getattr(fn, "__name__", "call"), tries=self._writer.tries, **kwargs
            )
        finally:
            self._sync_seconds += time.perf_counter() - t0

    def _get_or_create_experiment(self, name: str) -> str:
        exp = self._client.get_experiment_by_name(name)
        if exp is None:
            db = _sqlite_path(self.tracking_uri)
            # Next to the database rather than MLflow's default ./mlruns of whatever the
            # current directory happens to be; one folder per experiment, as MLflow does.
            folder = re.sub(r"[^\w.-]", "_", name)
            location = (db.parent / "mlartifacts" / folder).as_uri() if db is not None else None
            try:
                # The MLflow 3 UI opens an experiment on its GenAI view unless told what kind
                # it is: ours are model training, so users land on the runs table.
                return self._client.create_experiment(
                    name,
                    artifact_location=location,
                    tags={EXPERIMENT_KIND_TAG: "custom_model_development"},
                )
            except MlflowException:
                exp = self._client.get_experiment_by_name(name)  # created concurrently
                if exp is None:
                    raise
        if exp.lifecycle_stage != "active":
            raise TrackingError(
                f"MLflow experiment '{name}' is deleted; restore it "
                f"(mlflow experiments restore --experiment-id {exp.experiment_id}) "
                "or use another name"
            )
        return exp.experiment_id

    def _can_resume(self, state: dict[str, Any]) -> bool:
        parent = state.get("parent_run_id")
        if not parent or state.get("experiment_id") != self._experiment_id:
            return False
        try:
            run = self._client.get_run(parent)
        except MlflowException:
            return False
        return run.info.lifecycle_stage == "active"

    def _create_child(self, client: MlflowClient, index: int, name: str, tags: dict) -> None:
        run = client.create_run(self._experiment_id, run_name=name, tags=tags)
        with self._lock:
            self._runs[index] = run.info.run_id
        # saved at once: a crash right after must still let close_stale_runs find this run
        self._save_state()

    def _resolve(self, key: RunKey) -> str:
        if key == PARENT:
            return self._parent_id
        with self._lock:
            return self._runs[key]

    def _mark_logged(self, lane_index: int, step: int) -> None:
        with self._lock:
            self._logged[lane_index] = max(step, self._logged.get(lane_index, -1))
            self._dirty = True

    def _save_if_dirty(self) -> None:
        if self._dirty:
            self._save_state()

    def _end_all(self, keys: list[RunKey], status: str) -> None:
        def ended(key: RunKey) -> None:
            with self._lock:
                self._ended.add(key)

        if keys:
            self._writer.put(_End(keys, status, ended))

    def _shutdown(self) -> None:
        self._closed = True
        self._writer.stop()

    def _load_state(self) -> dict[str, Any] | None:
        if not self.state_path.exists():
            return None
        return json.loads(self.state_path.read_text())

    def _save_state(self) -> None:
        """Atomically: tmp file + os.replace, so a crash never leaves half a file."""
        with self._lock:
            self._dirty = False
            state = {
                "tracking_uri": self.tracking_uri,
                "experiment_id": self._experiment_id,
                "parent_run_id": self._parent_id,
                "runs": {str(k): v for k, v in sorted(self._runs.items())},
                "logged": {str(k): v for k, v in sorted(self._logged.items())},
            }
            _write_json_atomic(self.state_path, state)


def close_stale_runs(
    tracking_uri: str,
    state_path: Path,
    status: str = "FAILED",
    reason: str = "the sweep process stopped before ending its runs",
) -> int:
    """After a crash: end every run listed in `state_path` still RUNNING; return how many."""
    state_path = Path(state_path)
    if not state_path.exists():
        return 0
    state = json.loads(state_path.read_text())
    client = MlflowClient(tracking_uri=tracking_uri)
    parent = state.get("parent_run_id")
    run_ids = [*state.get("runs", {}).values(), *([parent] if parent else [])]
    ended = 0
    for run_id in run_ids:
        try:
            run = client.get_run(run_id)
        except MlflowException:
            continue  # deleted, or never made it to this store
        if run.info.status != "RUNNING":
            continue
        if run_id == parent:
            client.set_tag(run_id, TAG_ERROR, _truncate(reason, MAX_TAG_LENGTH))
        client.set_terminated(run_id, status=status)
        ended += 1
    return ended


# --------------------------------------------------------------------------- helpers


def _flatten(value: Any, prefix: str = "") -> Iterable[tuple[str, str]]:
    """{"search": {"learning_rate": {"min": 1e-5}}} -> ("search.learning_rate.min", "1e-05")."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield _key(prefix), _param_value(value)


def _param_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _key(name: str) -> str:
    return _BAD_KEY_CHARS.sub("_", name)[:MAX_KEY_LENGTH]


def _finite(value: Any) -> bool:
    """A number MLflow should get (numpy scalars included; None, bools, NaN and inf not)."""
    if value is None or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _now_ms() -> int:
    return int(time.time() * 1000)


def _lane_params(spec: SweepSpec, lane: Lane) -> list[Param]:
    values: dict[str, Any] = {
        "learning_rate": repr(lane.learning_rate),
        "optimizer": lane.optimizer,
        "schedule": lane.schedule,
        "seed": str(lane.seed),
        **{f"opt.{k}": repr(v) for k, v in lane.optimizer_args.items()},
        **{f"sched.{k}": repr(v) for k, v in lane.schedule_args.items()},
        "model": json.dumps(spec.model.model_dump(mode="json")),
        "loss": spec.loss,
        "batch_size": str(spec.train.batch_size),
        "steps": str(spec.train.steps),
    }
    return [Param(_key(k), _truncate(v, MAX_PARAM_LENGTH)) for k, v in values.items()]


def _run_names(lanes: list[Lane]) -> dict[int, str]:
    """Names like "adam-constant-lr1.2e-03-s0", plus the optimizer/schedule arguments that vary."""
    varying = set()
    for attr in ("optimizer_args", "schedule_args"):
        seen: dict[str, set[float]] = {}
        for lane in lanes:
            for k, v in getattr(lane, attr).items():
                seen.setdefault(k, set()).add(v)
        varying |= {(attr, k) for k, vs in seen.items() if len(vs) > 1}
    names = {}
    for lane in lanes:
        args = "".join(
            f"-{k}{v:g}"
            for attr in ("optimizer_args", "schedule_args")
            for k, v in sorted(getattr(lane, attr).items())
            if (attr, k) in varying
        )
        names[lane.index] = (
            f"{lane.optimizer}-{lane.schedule}-lr{lane.learning_rate:.1e}{args}-s{lane.seed}"
        )
    return names


def _report_metrics(report: dict[str, Any]) -> list[tuple[str, float]]:
    """Per group: "<optimizer>.<schedule>.best_lr" etc.; arguments join the prefix when needed."""
    groups = report.get("groups") or []
    prefixes = [f"{g['optimizer']}.{g['schedule']}" for g in groups]
    out = []
    for g, prefix in zip(groups, prefixes, strict=True):
        if prefixes.count(prefix) > 1:  # e.g. momentum searched over its beta
            args = {**(g.get("optimizer_args") or {}), **(g.get("schedule_args") or {})}
            prefix += "".join(f".{k}_{v:g}" for k, v in sorted(args.items()))
        zone = g.get("zone") or {}
        values = {
            "best_lr": g.get("best_lr"),
            "best_val_loss": g.get("best_val_loss"),
            f"best_val_{report.get('metric') or 'metric'}": g.get("best_val_metric"),
            "zone_low": zone.get("low"),
            "zone_high": zone.get("high"),
            "max_stable_lr": g.get("max_stable_lr"),
            "min_diverged_lr": g.get("min_diverged_lr"),
        }
        out += [(_key(f"{prefix}.{k}"), float(v)) for k, v in values.items() if _finite(v)]
    return out


def _winner_tags(winner: dict[str, Any] | None) -> list[RunTag]:
    if not winner:
        return []
    return [
        RunTag(f"winner.{k}", _truncate(v, MAX_TAG_LENGTH))
        for k, v in _flatten(winner)
        if v != "null"
    ]


def _log_text(run_id: str, text: str, name: str, client: MlflowClient) -> None:
    client.log_text(run_id, text, name)


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
