"""Dependencies of the routes (settings, the runner, the bearer token) and `in_session`, the way
a route reads or writes the job store."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service.errors import ApiError
from service.runner import Runner
from service.settings import ServiceSettings

T = TypeVar("T")


def get_settings(request: Request) -> ServiceSettings:
    return request.app.state.settings


async def in_session(request: Request, work: Callable[[Session], T]) -> T:
    """`work(session)` in the thread pool, with a session that is closed (its connection back
    in the pool) before the thread is given back.

    Not a session dependency of sync endpoints: FastAPI validates a sync endpoint's return
    value in the thread pool too, after the endpoint and before the dependency's teardown, so
    under load (tests/faults/test_fault_load.py: 200 clients) every pool thread waited for a
    connection while every connection waited, in a finished request, for a thread: the API
    stood still until SQLAlchemy's 30 s checkout timeout answered 500s."""

    def run() -> T:
        with request.app.state.sessions() as session:
            return work(session)

    return await run_in_threadpool(run)


def get_runner(request: Request) -> Runner:
    return request.app.state.runner


SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
RunnerDep = Annotated[Runner, Depends(get_runner)]

# auto_error=False: a missing or malformed header is our 401 with our JSON, not FastAPI's 403.
_bearer = HTTPBearer(auto_error=False, description="GOLDILOCKS_API_TOKEN, when it is set.")


def require_token(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """When GOLDILOCKS_API_TOKEN is set, every endpoint but /healthz needs it as a Bearer."""
    token = settings.token()
    if token is None:
        return
    given = credentials.credentials if credentials is not None else ""
    # compare_digest: the time taken does not tell how much of a guess was right.
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError(
            401,
            "Authorization: missing or wrong bearer token"
            if given
            else "Authorization: this service needs 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


AuthDep = Depends(require_token)
