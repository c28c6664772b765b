"""After a crash: end the MLflow runs a dead sweep process left RUNNING."""

from __future__ import annotations

from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sweeps.folder import TrackingState
from sweeps.tracking.naming import MAX_TAG_LENGTH, TAG_ERROR, truncate


def close_stale_runs(
    tracking_uri: str,
    state_path: Path,
    status: str = "FAILED",
    reason: str = "the sweep process stopped before ending its runs",
) -> int:
    """After a crash: end every run listed in `state_path` still RUNNING; return how many."""
    state = TrackingState.read(state_path)
    if state is None:
        return 0
    client = MlflowClient(tracking_uri=tracking_uri)
    parent = state.parent_run_id
    ended = 0
    for run_id in state.run_ids():
        try:
            run = client.get_run(run_id)
        except MlflowException:
            continue  # deleted, or never made it to this store
        if run.info.status != "RUNNING":
            continue
        if run_id == parent:
            client.set_tag(run_id, TAG_ERROR, truncate(reason, MAX_TAG_LENGTH))
        client.set_terminated(run_id, status=status)
        ended += 1
    return ended
