"""Where a sweep's MLflow store is: the tracking URI (flag, environment, default), how to open
it, and how this process's MLflow client waits on a tracking server."""

from __future__ import annotations

import os
import shlex
import urllib.error
import urllib.request
from pathlib import Path

REACH_TIMEOUT_S = 5.0  # how long `check_reachable` waits for a tracking server to answer


def resolve_tracking_uri(cli_value: str | None = None) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else ./mlflow.db; SQLite paths made absolute.

    Absolute, because the URI is printed for `mlflow ui` and handed to processes whose working
    directory may differ.
    """
    uri = cli_value or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    path = sqlite_path(uri)
    if path is None:
        return uri
    _, sep, query = uri.partition("?")
    return f"sqlite:///{path}{sep}{query}"


def ui_command(tracking_uri: str) -> str:
    """How a user looks at the sweep: a local UI over a database, or the server's address."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {tracking_uri}"
    return f"mlflow ui --backend-store-uri {shlex.quote(tracking_uri)}"


# MLflow 3's UI opens an experiment on its GenAI view (traces, evaluations) unless the link
# says otherwise; its bundle (3.17) reads `workflowType` from the query of the hash route
# (`#/experiments/1/runs?workflowType=...`; a query before the `#` is ignored), so the links
# open the model-training runs table. Checked in a real browser: tests/sweeps/test_mlflow_ui.py.
RUNS_VIEW_QUERY = "workflowType=machine_learning"
LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default


def experiment_url(ui_base: str, experiment_id: str) -> str:
    """The runs table of an experiment in the MLflow UI at `ui_base`."""
    return f"{ui_base.rstrip('/')}/#/experiments/{experiment_id}/runs?{RUNS_VIEW_QUERY}"


def run_url(ui_base: str, experiment_id: str, run_id: str) -> str:
    """One run (the sweep's parent run: its children are the lanes) in the MLflow UI."""
    base = ui_base.rstrip("/")
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{RUNS_VIEW_QUERY}"


def ui_base(tracking_uri: str | None, ui_url: str | None = None) -> str | None:
    """Where the UI is: the configured URL, else a tracking server (it serves the UI too),
    else None (a database: someone has to start `mlflow ui` over it)."""
    if ui_url:
        return ui_url.rstrip("/")
    if tracking_uri and tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return None


def ui_links(
    tracking_uri: str | None,
    experiment_id: str | None,
    parent_run_id: str | None = None,
    ui_url: str | None = None,
) -> dict[str, str | None]:
    """What a user needs to look at a sweep's runs: the tracking URI, the UI links to the runs
    view, and for a database without a UI, the command that serves one (the links then point
    at its default address)."""
    base = ui_base(tracking_uri, ui_url)
    command = None
    if base is None and tracking_uri:
        command, base = ui_command(tracking_uri), LOCAL_UI
    exp = experiment_url(base, experiment_id) if base and experiment_id else None
    run = run_url(base, experiment_id, parent_run_id) if exp and parent_run_id else None
    return {
        "tracking_uri": tracking_uri,
        "ui_command": command,
        "experiment_url": exp,
        "parent_run_url": run,
    }


def sqlite_path(uri: str) -> Path | None:
    """The absolute database path of a file-backed SQLite URI, else None."""
    if not uri.startswith("sqlite:///") or uri.startswith("sqlite:///:memory:"):
        return None
    raw = uri[len("sqlite:///") :].split("?", 1)[0]  # four slashes (absolute) keep their "/"
    return Path(raw).expanduser().resolve()


def check_reachable(uri: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Fail within seconds, naming the URI, when a tracking server cannot be reached (MLflow's
    own client would retry for minutes first). Any HTTP answer counts as reachable: a 401 or
    404 is MLflow's to explain. Database URIs are left to MLflow, which fails fast on them."""
    from sweeps.tracking.writer import TrackingError

    if not uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise TrackingError(
            f"MLflow tracking server {uri} is unreachable ({reason}); start it, or point "
            "--tracking-uri / MLFLOW_TRACKING_URI elsewhere"
        ) from None


# MLflow reads these when it makes a request, so they are set when a tracker is made, not at
# import: the service's standby driver imports this module and replaces its environment
# afterwards (a default set at import time was lost there, and service sweeps waited minutes
# on a dead tracking server). The user's own values win.
MLFLOW_CLIENT_DEFAULTS = {
    # With a tracking server, MlflowClient.set_terminated prints two "View run ... at" lines
    # per run (and fetches the run to do it): hundreds of lines per sweep.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    # A tracking server that goes away mid-sweep: each call retried 5 times with backoff 1, 2,
    # 4, 8, 16 s (about 30 s, where MLflow's defaults wait over 4 minutes), each try waiting at
    # most 30 s for an answer; then the sweep fails, its folder kept for `resume`.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def mlflow_client_config() -> dict[str, str]:
    """MLflow's client settings for this process, the defaults above under the user's own."""
    for key, value in MLFLOW_CLIENT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in MLFLOW_CLIENT_DEFAULTS}
