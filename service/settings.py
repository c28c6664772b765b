"""Service settings, read from the environment once (GOLDILOCKS_* variables).

Tests and embedders build the app with explicit settings (`create_app(ServiceSettings(...))`);
`get_settings()` is for `goldilocks serve`.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from sweeps.settings import Settings


class ServiceSettings(Settings):
    """The sweeps' settings (sweeps/settings.py: the lane cap, where uploads live, the MLflow UI
    link...) and the service's own, one declaration per GOLDILOCKS_* name."""

    # populate_by_name: ServiceSettings(tracking_uri=...) works despite the aliases below.
    model_config = SettingsConfigDict(
        env_prefix="GOLDILOCKS_", extra="ignore", populate_by_name=True
    )

    data_dir: Path = Path("./goldilocks-data")
    # Default: a SQLite file in data_dir. postgresql://... works too (psycopg 3 is used).
    database_url: str | None = None
    # datasets_dir (inherited): relative `data.path` of a submitted spec resolves there, and
    # may not leave it: a client must not make the service read arbitrary server files.
    # Default here: data_dir/datasets.
    # Folders (os.pathsep-separated) whose .py files and modules an HTTP spec's `import:` may
    # name: the service runs code only from where its operator put it (service/plugins.py).
    plugin_path: str | None = None
    # The installed top-level packages a dotted `import:` may name (comma-separated); "*" for
    # any. Default none: being installed on the server (numpy, pickle's users) is not the
    # operator saying "run this for whoever submits a spec".
    plugin_packages: str = ""
    # POST /datasets: an uploaded data file larger than this is refused (413).
    max_upload_bytes: int = Field(200 * 1024 * 1024, gt=0)
    api_token: SecretStr | None = None
    max_body_bytes: int = Field(1024 * 1024, gt=0)
    max_queue: int = Field(16, ge=0)  # queued sweeps beyond this answer 429
    # Drivers running at once. 0 pauses the runner: sweeps are accepted and stay queued.
    max_running: int = Field(1, ge=0)
    executor: Literal["ray", "inline"] = "ray"
    # One Ray cluster for the service's lifetime, joined by every Ray sweep (service/warm_ray.py);
    # off: each driver starts a local Ray of its own. Ignored when RAY_ADDRESS names a cluster.
    warm_ray: bool = True
    # One driver process kept started ahead, its imports done, for the next sweep
    # (service/standby.py); off: each sweep's driver starts when the sweep does.
    standby_driver: bool = True
    # mlflow_ui_url (inherited), e.g. http://127.0.0.1:5000: API responses link runs there.
    retry_after_s: int = Field(30, ge=1)  # the Retry-After of a 429
    cancel_grace_s: float = Field(15.0, gt=0)  # SIGTERM, then SIGKILL after this long
    cancel_wait_s: float = Field(10.0, ge=0)  # POST .../cancel waits this long for the end
    max_resume_attempts: int = Field(2, ge=0)  # after a crash or a restart
    # A driver attempt running longer is stopped (SIGTERM, then SIGKILL) and its sweep ends
    # failed with the reason: a runaway sweep cannot hold a running slot for ever.
    max_sweep_s: float = Field(24 * 3600.0, gt=0)
    poll_interval_s: float = Field(0.5, gt=0)

    # Handed to every driver. Not prefixed: they are the libraries' own variables.
    tracking_uri: str | None = Field(
        None, validation_alias=AliasChoices("GOLDILOCKS_TRACKING_URI", "MLFLOW_TRACKING_URI")
    )
    ray_address: str | None = Field(
        None, validation_alias=AliasChoices("GOLDILOCKS_RAY_ADDRESS", "RAY_ADDRESS")
    )

    @property
    def sweeps_dir(self) -> Path:
        return self.data_dir.resolve() / "sweeps"

    @property
    def datasets_path(self) -> Path:
        return (self.datasets_dir or self.data_dir / "datasets").resolve()

    @property
    def plugin_dirs(self) -> tuple[Path, ...]:
        """GOLDILOCKS_PLUGIN_PATH's folders, resolved, in order (empty entries skipped)."""
        parts = (self.plugin_path or "").split(os.pathsep)
        return tuple(dict.fromkeys(Path(p).expanduser().resolve() for p in parts if p.strip()))

    @property
    def allowed_packages(self) -> frozenset[str] | None:
        """The installed top-level packages a dotted `import:` may name; None: any ("*")."""
        if self.plugin_packages.strip() == "*":
            return None
        return frozenset(p.strip() for p in self.plugin_packages.split(",") if p.strip())

    @property
    def db_url(self) -> str:
        """The SQLAlchemy URL; plain postgresql:// URLs get the installed psycopg 3 driver."""
        url = self.database_url or f"sqlite:///{self.data_dir.resolve() / 'goldilocks.db'}"
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @property
    def mlflow_uri(self) -> str:
        """The drivers' tracking URI: MLFLOW_TRACKING_URI, else a SQLite file in data_dir
        (next to the job store, rather than in whatever directory the service started)."""
        return self.tracking_uri or f"sqlite:///{self.data_dir.resolve() / 'mlflow.db'}"

    def token(self) -> str | None:
        """The API token; an empty GOLDILOCKS_API_TOKEN counts as unset (no auth)."""
        return (self.api_token.get_secret_value() or None) if self.api_token else None


@lru_cache(maxsize=1)
def get_settings() -> ServiceSettings:
    return ServiceSettings()
