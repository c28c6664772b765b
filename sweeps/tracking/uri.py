"""Where a sweep's MLflow store is: the tracking URI (flag, environment, default) and how to open it."""

from __future__ import annotations

import os
import shlex
from pathlib import Path


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
