"""An HTTP client for the sweep service (used by the `goldilocks submit/status/...` commands)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

DEFAULT_SERVER = "http://127.0.0.1:8000"
TERMINAL = ("succeeded", "failed", "cancelled")


class ApiError(Exception):
    """The service answered with an error: `status`, `message`, and per-field `errors`."""

    def __init__(self, status: int, message: str, errors: list[str] | None = None, headers=None):
        self.status = status
        self.message = message
        self.errors = errors or []
        self.headers = dict(headers or {})
        super().__init__(f"HTTP {status}: {message}")


class ServerUnreachable(Exception):
    """No answer from the server (down, wrong URL, network)."""


class GoldilocksClient:
    def __init__(
        self,
        server: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self.server = (server or os.environ.get("GOLDILOCKS_SERVER") or DEFAULT_SERVER).rstrip("/")
        token = token if token is not None else os.environ.get("GOLDILOCKS_API_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.server, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GoldilocksClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- endpoints

    def submit(
        self,
        spec: str | bytes | dict[str, Any] | Path,
        *,
        content_type: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Queue a sweep from a dict (sent as JSON), a spec file, or spec text (YAML/JSON)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        if isinstance(spec, dict):
            return self._json("POST", "/sweeps", json=spec, headers=headers)
        if isinstance(spec, Path):
            if content_type is None:
                json_file = spec.suffix.lower() == ".json"
                content_type = "application/json" if json_file else "application/yaml"
            spec = spec.read_bytes()
        headers["Content-Type"] = content_type or "application/yaml"
        body = spec.encode() if isinstance(spec, str) else spec
        return self._json("POST", "/sweeps", content=body, headers=headers)

    def get(self, sweep_id: str) -> dict[str, Any]:
        return self._json("GET", f"/sweeps/{sweep_id}")

    def list(self, *, status: str | None = None, limit: int = 50, offset: int = 0) -> dict:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        return self._json("GET", "/sweeps", params=params)

    def cancel(self, sweep_id: str, *, wait: bool = True) -> dict[str, Any]:
        """Cancel; `wait=False` answers once the cancel is recorded, else the server waits a
        few seconds (its cancel_wait_s) for a running sweep to end."""
        params = None if wait else {"wait": "false"}
        return self._json("POST", f"/sweeps/{sweep_id}/cancel", params=params)

    def report(self, sweep_id: str) -> dict[str, Any]:
        return self._json("GET", f"/sweeps/{sweep_id}/report")

    def plot(self, sweep_id: str, name: str) -> bytes:
        return self._request("GET", f"/sweeps/{sweep_id}/plots/{name}").content

    def upload_dataset(
        self, path: Path, *, name: str | None = None, target: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Upload a data file (POST /datasets, the file as the body): (its info, whether it is
        new: False when the server had the same file already)."""
        params = {"name": name or path.name}
        if target is not None:
            params["target"] = target
        headers = {"Content-Type": "application/octet-stream"}
        with path.open("rb") as body:
            response = self._request(
                "POST",
                "/datasets",
                params=params,
                content=body,
                headers=headers,
                # the server loads the file before it answers: a large table takes a while
                timeout=httpx.Timeout(self._http.timeout.connect, read=600.0, write=600.0),
            )
        return response.json(), response.status_code == 201

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        return self._json("GET", f"/datasets/{dataset_id}")

    def datasets(self, *, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        return self._json("GET", "/datasets", params={"limit": limit, "offset": offset})

    def health(self) -> dict[str, Any]:
        return self._json("GET", "/healthz")

    # ---- plumbing

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return self._request(method, path, **kwargs).json()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as err:
            raise ServerUnreachable(f"{self.server}: {err or type(err).__name__}") from None
        if response.is_error:
            raise _api_error(response)
        return response


def _api_error(response: httpx.Response) -> ApiError:
    message, errors = response.reason_phrase or "error", []
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = response.text[:500] or None
    if isinstance(detail, dict):
        message = detail.get("message") or message
        errors = [str(e) for e in detail.get("errors") or []]
    elif detail:
        message = str(detail)
    return ApiError(response.status_code, message, errors, response.headers)
