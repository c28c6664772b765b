"""Dependencies of the routes: settings, a database session, the runner, the bearer token."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service.errors import ApiError
from service.runner import Runner
from service.settings import ServiceSettings


def get_settings(request: Request) -> ServiceSettings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def get_runner(request: Request) -> Runner:
    return request.app.state.runner


SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
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
