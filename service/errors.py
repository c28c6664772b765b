"""Uniform JSON errors, and the request-body size limit.

Every error the API answers looks like

    {"detail": {"message": "search.optimizer: unknown optimizer 'adamx'; ...",
                "errors": ["search.optimizer: unknown optimizer 'adamx'; ...", ...]}}

`message` names the field or the reason; `errors` has one "field: message" line per problem.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ApiError(HTTPException):
    """An error answer: a status, a message naming the field or reason, optional detail lines."""

    def __init__(
        self,
        status_code: int,
        message: str,
        errors: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(
            status_code, detail={"message": message, "errors": errors or []}, headers=headers
        )


def error_body(message: str, errors: list[str] | None = None) -> dict[str, Any]:
    return {"detail": {"message": message, "errors": errors or []}}


def _location(loc: tuple | list) -> str:
    # ("query", "limit") -> "query.limit"; ("path", "sweep_id") -> "path.sweep_id"
    return ".".join(str(p) for p in loc)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail
    if not (isinstance(detail, dict) and "message" in detail):
        detail = {"message": str(detail), "errors": []}
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    lines = []
    for err in exc.errors():
        where = _location(err.get("loc", ()))
        lines.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", ""))
    message = lines[0] if lines else "invalid request"
    return JSONResponse(error_body(message, lines), status_code=422)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(
        error_body(f"internal error ({type(exc).__name__}); see the service log"), status_code=500
    )


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The job store cannot be reached (PostgreSQL restarting, say): 503, try again, rather
    than a 500 that also drops the client's kept-alive connection."""
    log.warning("job store unavailable on %s %s: %s", request.method, request.url.path,
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__)  # fmt: skip
    retry = getattr(getattr(request.app.state, "settings", None), "retry_after_s", 5)
    return JSONResponse(
        error_body("the job store is unavailable; retry shortly"),
        status_code=503,
        headers={"Retry-After": str(retry)},
    )


def install_error_handlers(app: FastAPI) -> None:
    from sqlalchemy.exc import InterfaceError, OperationalError

    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    # A handler for these classes (not Exception) is answered by Starlette's exception
    # middleware: the response goes out and the connection stays open.
    app.add_exception_handler(OperationalError, _store_unavailable)
    app.add_exception_handler(InterfaceError, _store_unavailable)
    app.add_exception_handler(Exception, _unexpected)


# --------------------------------------------------------------------------- body size


class BodyTooLarge(ApiError):
    def __init__(self, limit: int, setting: str | None = None):
        named = f" ({setting})" if setting else ""
        super().__init__(
            413, f"body: request body is larger than the limit of {limit} bytes{named}"
        )


class BodySizeLimit:
    """Refuse request bodies over `max_bytes` with 413, before anything parses them.

    A Content-Length over the limit is refused before the body is read; a chunked body (no
    Content-Length) is counted as it arrives and refused as soon as it passes the limit (the
    route sees a BodyTooLarge from `request.body()`, which the error handlers turn into 413).
    `limits` gives some paths a limit of their own: {path: (bytes, the setting's name)} (the
    uploads of POST /datasets).
    """

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        max_bytes: int,
        limits: dict[str, tuple[int, str | None]] | None = None,
    ):
        self.app = app
        self.max_bytes = max_bytes
        self.limits = limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, root = scope.get("path", ""), scope.get("root_path", "")
        path = path[len(root) :] if root and path.startswith(root) else path
        limit, setting = self.limits.get(path, (self.max_bytes, None))
        declared = _content_length(scope)
        if declared == -1 or (declared is not None and declared > limit):
            status, message = (
                (400, "Content-Length: not a number")
                if declared == -1
                else (413, BodyTooLarge(limit, setting).detail["message"])
            )
            await _send_json(send, status, error_body(message))
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit, setting)
            return message

        await self.app(scope, limited, send)


def _content_length(scope: Scope) -> int | None:
    """The declared length; None if absent, -1 if malformed."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                n = int(value)
            except ValueError:
                return -1
            return n if n >= 0 else -1
    return None


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
