"""MLflow tracking for a sweep: one parent run per sweep, one child run per lane.

The tracking package is the only one that imports MLflow. Everything goes through `MlflowClient` with explicit run
ids (the fluent API keeps the active run on a thread-local stack), and every write after the
parent run's creation goes through one background thread (`Writer`): training never waits on
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
import re
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from sweeps.folder import REPORT, SPEC, VERDICT, TrackingState
from sweeps.plan.lanes import Lane
from sweeps.spec import SweepSpec, spec_to_json
from sweeps.tracking.naming import (
    EXPERIMENT_KIND_TAG,
    MAX_TAG_LENGTH,
    SPEC_PARAM_LENGTH,
    TAG_ERROR,
    TAG_KIND,
    TAG_LANE,
    TAG_PRUNED_AT,
    TAG_ROUND,
    TAG_STATUS,
    TAG_SWEEP_ID,
    TAG_TRIAL_ID,
    finite,
    flatten,
    lane_params,
    metric_key,
    now_ms,
    report_metrics,
    run_names,
    truncate,
    winner_tags,
)
from sweeps.tracking.store import create_store_beside
from sweeps.tracking.uri import check_reachable, mlflow_client_config, sqlite_path
from sweeps.tracking.writer import (
    PARENT,
    RETRIES,
    Batch,
    Call,
    Create,
    End,
    RunKey,
    TrackingError,
    Writer,
    with_retries,
)
from sweeps.verdict.results import LaneResult
from sweeps.verdict.words import verdict_markdown

log = logging.getLogger(__name__)


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
        self.client_config = mlflow_client_config()
        create_store_beside(tracking_uri)
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
        self._writer = Writer(
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

    def start(self, *, spec: SweepSpec, sweep_id: str) -> None:
        """Create (or, from the state file, reuse) the parent run; lanes come with `add_lanes`."""
        state = self._load_state()
        check_reachable(self.tracking_uri)  # seconds, not MLflow's minutes of retries
        self._experiment_id = self._sync(self._get_or_create_experiment, spec.experiment)
        stored = self._sync(self._runs_in_store, sweep_id)
        if state is None and stored is not None:  # runs made, their state file never written
            state = TrackingState(self.tracking_uri, self._experiment_id, stored[0])
        resumed = state is not None and self._can_resume(state, sweep_id)
        if resumed:
            self._parent_id = state.parent_run_id
            self._runs = dict(state.runs)
            if stored is not None and stored[0] == self._parent_id:  # lanes the file missed
                for lane, run_id in stored[1].items():
                    self._runs.setdefault(lane, run_id)
            self._logged = dict(state.logged)
            for lane, step in self._sync(self._steps_in_store).items():
                self._logged[lane] = max(step, self._logged.get(lane, -1))
            self._queued = dict(self._logged)
            self._sync(self._client.update_run, self._parent_id, status="RUNNING")
            for key, run_id in self._runs.items():  # a finished or failed attempt runs again
                self._writer.put(
                    Call(key, lambda c, r=run_id: c.update_run(r, status="RUNNING"), "resume run")
                )
        else:
            if state is not None:
                log.warning(
                    "ignoring %s: its runs are not sweep %s's in %s",
                    self.state_path,
                    sweep_id,
                    self.tracking_uri,
                )
            parent = self._sync(
                self._client.create_run,
                self._experiment_id,
                run_name=spec.name,
                tags={TAG_SWEEP_ID: sweep_id, TAG_KIND: "sweep"},
            )
            self._parent_id = parent.info.run_id
            spec_params = [
                Param(k, truncate(v, SPEC_PARAM_LENGTH))
                for k, v in flatten(spec.model_dump(mode="json"))
            ]
            self._writer.put(Batch(PARENT, params=spec_params))
            self._writer.put(
                Call(
                    PARENT,
                    partial(_log_text, self._parent_id, spec_to_json(spec), SPEC),
                    "log spec.json",
                )
            )
        # A full disk must not fail the opening with a parent run already RUNNING: the runs
        # exist whatever happens to the file, and the writer tries it again after its cycle.
        self._save_state_or_retry()

        self._spec, self._sweep_id = spec, sweep_id

    def add_lanes(self, lanes: list[Lane], trial_id: str) -> None:
        """One child run per lane (reused when the state file already has it), created by the
        writer in one go: this returns at once, however many lanes."""
        spec = self._spec
        names = run_names(lanes, spec)
        self._lanes |= {lane.index for lane in lanes}
        new = [lane for lane in lanes if lane.index not in self._runs]
        if not new:
            return
        runs = [
            (lane.index, names[lane.index], {
                MLFLOW_PARENT_RUN_ID: self._parent_id,
                TAG_SWEEP_ID: self._sweep_id,
                TAG_KIND: "lane",
                TAG_TRIAL_ID: trial_id,
                TAG_LANE: str(lane.index),
                TAG_ROUND: str(getattr(lane, "round", 1)),
            })
            for lane in new
        ]  # fmt: skip
        # The state is saved once they all exist: a crash right after must still let
        # close_stale_runs find them. The runs exist whatever happens to the file (a full
        # disk): not an MLflow failure, and the writer tries the file again after its cycle.
        self._writer.put(
            Create(self._experiment_id, runs, self._child_created, self._save_state_or_retry)
        )
        for lane in new:
            self._writer.put(Batch(lane.index, params=lane_params(spec, lane)))

    def log_progress(self, results: list[LaneResult]) -> None:
        """Queue every history point not logged yet (non-blocking; NaN/inf values skipped)."""
        with self._progress_lock:
            self._queue_progress(results)

    def _queue_progress(self, results: list[LaneResult]) -> None:
        now = now_ms()
        for r in results:
            i = r.lane.index
            last = self._queued.get(i, -1)
            new = [k for k, step in enumerate(r.step) if step > last]
            if not new:
                continue
            if i not in self._lanes:
                raise KeyError(f"lane {i} was not given to add_lanes()")
            series = {
                "train_loss": r.train_loss,
                "val_loss": r.val_loss,
                f"val_{r.metric}": r.val_metric,
                "lr": r.learning_rate,
                **r.extra_metrics,
            }
            metrics = [
                Metric(metric_key(name), float(values[k]), now, int(r.step[k]))
                for k in new
                for name, values in series.items()
                if k < len(values) and finite(values[k])
            ]
            top = int(r.step[new[-1]])
            self._queued[i] = top
            self._writer.put(
                Batch(i, metrics=metrics, done=[lambda i=i, s=top: self._mark_logged(i, s)])
            )

    def finish(
        self, *, results: list[LaneResult], report: dict[str, Any], artifacts_dir: Path | None
    ) -> None:
        """Log the verdicts and report, end every run FINISHED, and wait until all is written.

        A diverged lane ends FINISHED too: divergence is a result, not a failure. A lane with
        no result (its trial was lost) ends FAILED. Run ids are the caller's to assign before
        it builds the report (`assign_run_ids`), once.
        """
        self.log_progress(results)
        self._end_all(sorted(self._lanes - {r.lane.index for r in results}), "FAILED")
        now = now_ms()
        for r in results:
            i = r.lane.index
            step = int(r.step[-1]) if r.step else 0
            summary = {
                "best_val_loss": r.best_val_loss,
                f"best_val_{r.metric}": r.best_val_metric,
                "final_train_loss": r.final_train_loss,
                "diverged_at_step": r.diverged_at_step,
            }
            metrics = [Metric(k, float(v), now, step) for k, v in summary.items() if finite(v)]
            tags = [RunTag(TAG_STATUS, r.status)] if r.status else []
            if r.pruned_at_step is not None:  # stopped at a rung: a result, ended FINISHED
                tags.append(RunTag(TAG_PRUNED_AT, str(r.pruned_at_step)))
            self._writer.put(Batch(i, metrics=metrics, tags=tags))
        self._end_all([r.lane.index for r in results], "FINISHED")

        metrics, tags = report_metrics(report), winner_tags(report.get("winner"))
        self._writer.put(
            Batch(PARENT, metrics=[Metric(k, v, now, 0) for k, v in metrics], tags=tags)
        )
        parent = self._parent_id
        text = json.dumps(report, indent=1)
        self._writer.put(Call(PARENT, partial(_log_text, parent, text, REPORT), "log report.json"))
        verdict = verdict_markdown(report)
        self._writer.put(Call(PARENT, partial(_log_text, parent, verdict, VERDICT), "log verdict"))
        if artifacts_dir is not None and Path(artifacts_dir).is_dir():
            folder = Path(artifacts_dir)
            # logged as a folder of the same name: <out>/plots -> plots/*.png
            self._writer.put(
                Call(
                    PARENT,
                    lambda c: c.log_artifacts(parent, str(folder), folder.name),
                    "log artifacts",
                )
            )
        self._end_all([PARENT], "FINISHED")
        self._writer.flush(timeout=600)
        self._save_state_or_retry()  # every run has ended: the file is no longer needed
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
                Batch(PARENT, tags=[RunTag(TAG_ERROR, truncate(reason, MAX_TAG_LENGTH))])
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
        self._save_state_or_retry()
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
            return with_retries(
                fn, *args, what=getattr(fn, "__name__", "call"), tries=self._writer.tries, **kwargs
            )
        finally:
            self._sync_seconds += time.perf_counter() - t0

    def _get_or_create_experiment(self, name: str) -> str:
        exp = self._client.get_experiment_by_name(name)
        if exp is None:
            db = sqlite_path(self.tracking_uri)
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

    def _can_resume(self, state: TrackingState, sweep_id: str) -> bool:
        """The state file's runs are this sweep's: same store and experiment, and a live parent
        run tagged with this sweep id (a folder reused by another sweep must never hand it the
        first sweep's runs)."""
        parent = state.parent_run_id
        if not parent or state.experiment_id != self._experiment_id:
            return False
        try:
            run = self._client.get_run(parent)
        except MlflowException:
            return False
        owner = run.data.tags.get(TAG_SWEEP_ID)
        return run.info.lifecycle_stage == "active" and owner == sweep_id

    def _runs_in_store(self, sweep_id: str) -> tuple[str, dict[int, str]] | None:
        """This sweep's parent run and lane runs as the store has them, by their tags: what a
        resume reuses when the state file never got them (a disk full as the runs were made)."""
        runs = self._client.search_runs(
            [self._experiment_id],
            filter_string=f"tags.`{TAG_SWEEP_ID}` = '{sweep_id}'",
            max_results=50_000,
        )
        parents = [r for r in runs if r.data.tags.get(TAG_KIND) == "sweep"]
        if len(parents) != 1:
            return None
        lanes = {
            int(r.data.tags[TAG_LANE]): r.info.run_id
            for r in runs
            if r.data.tags.get(TAG_KIND) == "lane" and TAG_LANE in r.data.tags
        }
        return parents[0].info.run_id, lanes

    def _steps_in_store(self) -> dict[int, int]:
        """The last step MLflow holds for each lane run of the state file. The file's `logged`
        can lag behind the store (the sweep stopped before it was saved again, or the disk was
        full): trusting it alone, a resume would log those points a second time."""
        lane_of = {run_id: lane for lane, run_id in self._runs.items()}
        found: dict[int, int] = {}
        token = None
        for _ in range(2 + len(lane_of) // 1000):  # pages of 1000 children, bounded
            page = self._client.search_runs(
                [self._experiment_id],
                filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{self._parent_id}'",
                max_results=1000,
                page_token=token,
            )
            for run in page:
                lane = lane_of.get(run.info.run_id)
                steps = [m.step for m in run.data.to_proto().metrics]  # each key's latest
                if lane is not None and steps:
                    found[lane] = max(steps)
            token = page.token
            if not token:
                break
        return found

    def _child_created(self, index: RunKey, run_id: str) -> None:
        with self._lock:
            self._runs[int(index)] = run_id

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
            self._writer.put(End(keys, status, ended))

    def _shutdown(self) -> None:
        self._closed = True
        self._writer.stop()

    def _load_state(self) -> TrackingState | None:
        """The state file, None if there is none; FolderError if it is truncated or garbage:
        its runs would be unknown, and carrying on would log the sweep twice."""
        return TrackingState.read(self.state_path)

    def _save_state_or_retry(self) -> None:
        """Save the state file now if possible; else log it and leave it to the next cycle
        (for the failure paths and the writer: the state file must not hide a sweep's own
        outcome or error)."""
        try:
            self._save_state()
        except OSError as err:
            with self._lock:
                self._dirty = True
            log.error("could not save the tracking state %s: %s", self.state_path, err)

    def _save_state(self) -> None:
        """Atomically: tmp file + os.replace, so a crash never leaves half a file."""
        with self._lock:
            self._dirty = False
            state = TrackingState(
                self.tracking_uri,
                self._experiment_id,
                self._parent_id,
                dict(self._runs),
                dict(self._logged),
            )
            state.write(self.state_path)


def _log_text(run_id: str, text: str, name: str, client: MlflowClient) -> None:
    client.log_text(run_id, text, name)
