"""Readiness of what sweeps need: the job store, Ray and MLflow. Cheap checks, cached briefly
(a probe every second must not become a load on the store or the tracking server)."""

from __future__ import annotations

import importlib.util
import os
import socket
import threading
import time
from urllib.parse import urlsplit

from sqlalchemy import Engine, text

from service.schemas import ComponentHealth
from service.settings import ServiceSettings
from service.store import current_revision, head_revision

CACHE_S = 5.0
TIMEOUT_S = 2.0


class HealthChecks:
    def __init__(self, settings: ServiceSettings, engine: Engine):
        self.settings = settings
        self.engine = engine
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, ComponentHealth]] | None = None

    def run(self) -> dict[str, ComponentHealth]:
        with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < CACHE_S:
                return self._cached[1]
            checks = {
                "store": _guard(self.store),
                "ray": _guard(self.ray),
                "mlflow": _guard(self.mlflow),
            }
            self._cached = (time.monotonic(), checks)
            return checks

    def store(self) -> ComponentHealth:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        current, head = current_revision(self.engine), head_revision()
        if current != head:
            return ComponentHealth(ok=False, detail=f"schema at {current}, expected {head}")
        return ComponentHealth(ok=True, detail=f"{self.engine.dialect.name}, schema {current}")

    def ray(self) -> ComponentHealth:
        address = self.settings.ray_address
        if not address:
            if self.settings.executor == "inline":
                return ComponentHealth(ok=True, detail="not used (inline executor)")
            found = importlib.util.find_spec("ray") is not None
            return ComponentHealth(
                ok=found,
                detail=(
                    (
                        "the service's own Ray, joined by every sweep"
                        if self.settings.warm_ray
                        else "local Ray, started by each driver"
                    )
                    if found
                    else "ray missing"
                ),  # fmt: skip
            )
        if address == "auto":
            return ComponentHealth(ok=True, detail="RAY_ADDRESS=auto (found by each driver)")
        parsed = urlsplit(address if "://" in address else f"ray://{address}")
        return _tcp("ray", parsed.hostname, parsed.port or 6379)

    def mlflow(self) -> ComponentHealth:
        uri = self.settings.mlflow_uri
        scheme = urlsplit(uri).scheme
        if scheme in ("http", "https"):
            import httpx

            response = httpx.get(uri.rstrip("/") + "/health", timeout=TIMEOUT_S)
            return ComponentHealth(
                ok=response.status_code == 200,
                detail=f"tracking server {_redact(uri)}: HTTP {response.status_code}",
            )
        if scheme == "sqlite":
            path = uri.split("///", 1)[-1].split("?", 1)[0]
            folder = os.path.dirname(os.path.abspath(path)) or "."
            while not os.path.exists(folder):  # created by the first driver
                folder = os.path.dirname(folder)
            ok = os.access(folder, os.W_OK)
            # No path in the answer: /healthz needs no token.
            return ComponentHealth(ok=ok, detail="SQLite store" + ("" if ok else " not writable"))
        if scheme.startswith(("postgresql", "mysql", "mssql")):
            parsed = urlsplit(uri)
            default_port = 5432 if scheme.startswith("postgresql") else 3306
            return _tcp("mlflow", parsed.hostname, parsed.port or default_port)
        return ComponentHealth(ok=True, detail=f"{scheme or 'file'} store (not probed)")


def _tcp(name: str, host: str | None, port: int) -> ComponentHealth:
    try:
        with socket.create_connection((host or "127.0.0.1", port), timeout=TIMEOUT_S):
            return ComponentHealth(ok=True, detail=f"{name} at {host}:{port} reachable")
    except OSError as err:
        return ComponentHealth(ok=False, detail=f"{name} at {host}:{port}: {err}")


def _redact(uri: str) -> str:
    parsed = urlsplit(uri)
    if parsed.password:
        return uri.replace(parsed.password, "***")
    return uri


def _guard(check) -> ComponentHealth:
    try:
        return check()
    except Exception as err:
        return ComponentHealth(ok=False, detail=f"{type(err).__name__}: {err}")
