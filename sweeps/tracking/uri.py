"""Where a sweep's MLflow store is: the tracking URI (flag, environment, default) and how to open it."""

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
