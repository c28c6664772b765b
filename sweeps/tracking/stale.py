"""After a crash: end the MLflow runs a dead sweep process left RUNNING."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sweeps.tracking.naming import MAX_TAG_LENGTH, TAG_ERROR, truncate


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
            client.set_tag(run_id, TAG_ERROR, truncate(reason, MAX_TAG_LENGTH))
        client.set_terminated(run_id, status=status)
        ended += 1
    return ended
