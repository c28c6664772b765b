"""/sweeps: submit, list, read, cancel; the report and plots of a finished sweep."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from service import store, submit, views
from service.deps import AuthDep, RunnerDep, SettingsDep, in_session
from service.errors import ApiError
from service.folders import BadName, plot_path, sweep_folder
from service.schemas import ErrorResponse, SweepCreated, SweepList, SweepPublic
from service.store import CancelOutcome, SweepStatus
from sweeps.folder import REPORT

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong bearer token."},
    422: {"model": ErrorResponse, "description": "Invalid input; `errors` names each field."},
}
router = APIRouter(prefix="/sweeps", tags=["sweeps"], dependencies=[AuthDep], responses=_ERRORS)

SweepId = Annotated[
    str, Path(pattern=r"^[0-9a-f]{32}$", description="The sweep id (32 hex digits).")
]
_NOT_FOUND = {404: {"model": ErrorResponse, "description": "No such sweep."}}


EXAMPLE_SPEC: dict[str, Any] = {
    "name": "iris-optimizers",
    "experiment": "goldilocks",
    "data": {"name": "iris", "val_fraction": 0.2},
    "model": {"name": "mlp", "hidden": [16]},
    "loss": "cross_entropy",
    "train": {"steps": 200, "batch_size": 32, "eval_every": 20, "seeds": [0]},
    "search": {
        "method": "grid",
        "learning_rate": {"min": 1e-4, "max": 10.0, "num": 11, "scale": "log"},
        "optimizer": ["sgd", "adam"],
        "schedule": ["constant"],
    },
}
EXAMPLE_YAML = """\
name: iris-optimizers
data: {name: iris}
model: {name: mlp, hidden: [16]}
loss: cross_entropy
train: {steps: 200, batch_size: 32, eval_every: 20}
search:
  learning_rate: {min: 1.0e-4, max: 10.0, num: 11}
  optimizer: [sgd, adam]
"""


def _openapi_body() -> dict[str, Any]:
    """The request body is read by hand (JSON or YAML); describe it for /docs and clients.
    The SweepSpec schema itself is added to the components by `service.app`."""
    return {
        "requestBody": {
            "required": True,
            "description": 'The sweep spec (see README.md, "The spec"), as JSON or YAML.',
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/SweepSpec"},
                    "example": EXAMPLE_SPEC,
                },
                "application/yaml": {"schema": {"type": "string"}, "example": EXAMPLE_YAML},
            },
        }
    }


@router.post(
    "",
    status_code=201,
    response_model=SweepCreated,
    openapi_extra=_openapi_body(),
    responses={
        409: {"model": ErrorResponse, "description": "Idempotency-Key reused for another spec."},
        413: {"model": ErrorResponse, "description": "Body over the size limit."},
        415: {"model": ErrorResponse, "description": "Neither JSON nor YAML."},
        429: {"model": ErrorResponse, "description": "Queue full; see Retry-After."},
    },
)
async def submit_sweep(
    request: Request,
    response: Response,
    settings: SettingsDep,
    runner: RunnerDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="A retried submit with the same key returns the same sweep.",
        ),
    ] = None,
) -> SweepCreated:
    """Queue a sweep. It is validated exactly as `goldilocks run` would (data included)."""
    body = await request.body()
    sweep, replayed = await run_in_threadpool(
        submit.submit,
        request.app.state.sessions,
        settings,
        body=body,
        content_type=request.headers.get("content-type"),
        idempotency_key=idempotency_key,
    )
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    else:
        runner.wake()
    response.headers["Location"] = f"/sweeps/{sweep.id}"
    return SweepCreated(**views.public(sweep, settings).model_dump())


@router.get("", response_model=SweepList)
async def list_sweeps(
    request: Request,
    status: Annotated[SweepStatus | None, Query(description="Only sweeps in this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> SweepList:
    """Sweeps, newest first."""

    def work(session) -> SweepList:
        items, total = store.list_sweeps(session, status=status, limit=limit, offset=offset)
        return SweepList(
            items=[views.summary(s) for s in items], total=total, limit=limit, offset=offset
        )

    return await in_session(request, work)


def _get(session, sweep_id: str) -> store.Sweep:
    sweep = store.get_sweep(session, sweep_id=sweep_id)
    if sweep is None:
        raise ApiError(404, f"id: no sweep '{sweep_id}'")
    return sweep


@router.get("/{sweep_id}", response_model=SweepPublic, responses=_NOT_FOUND)
async def get_sweep(sweep_id: SweepId, request: Request, settings: SettingsDep) -> SweepPublic:
    """Status, spec, progress (with an ETA), timestamps, error, MLflow ids and links."""
    return await in_session(
        request, lambda session: views.public(_get(session, sweep_id), settings)
    )


@router.post(
    "/{sweep_id}/cancel",
    response_model=SweepPublic,
    responses={
        **_NOT_FOUND,
        202: {"model": SweepPublic, "description": "Still stopping; poll the sweep."},
        409: {"model": ErrorResponse, "description": "The sweep already finished."},
    },
)
async def cancel_sweep(
    sweep_id: SweepId,
    request: Request,
    settings: SettingsDep,
    runner: RunnerDep,
    response: Response,
    wait: Annotated[
        bool,
        Query(
            description="Wait up to the service's cancel_wait_s for a running sweep to end "
            "(the default); false: answer as soon as the cancel is recorded (202)."
        ),
    ] = True,
) -> SweepPublic:
    """Stop a queued or running sweep; its MLflow runs end KILLED.

    The cancel is recorded at once (`cancel_requested`; a queued sweep is cancelled on the spot).
    A running sweep's driver gets SIGTERM (then SIGKILL after the grace period); the answer
    waits up to `cancel_wait_s` for it (unless `wait=false`): 200 once cancelled, else 202
    while it stops.
    """

    def work(session) -> tuple[SweepPublic, bool]:
        outcome = store.request_cancel(session, sweep_id=sweep_id)
        if outcome == CancelOutcome.not_found:
            raise ApiError(404, f"id: no sweep '{sweep_id}'")
        if outcome == CancelOutcome.finished:
            sweep = _get(session, sweep_id)
            raise ApiError(
                409, f"status: sweep {sweep_id} already {sweep.status}; nothing to cancel"
            )
        if outcome == CancelOutcome.requested:
            runner.wake()
        if outcome == CancelOutcome.requested and wait:
            deadline = time.monotonic() + settings.cancel_wait_s
            while time.monotonic() < deadline:
                session.commit()  # end the transaction: each look sees the runner's latest write
                if _get(session, sweep_id).terminal:
                    break
                time.sleep(0.1)
        sweep = _get(session, sweep_id)
        return views.public(sweep, settings), sweep.terminal

    public, terminal = await in_session(request, work)
    if not terminal:
        response.status_code = 202
    return public


def _folder(settings, sweep_id: str):
    try:
        return sweep_folder(settings.sweeps_dir, sweep_id)
    except BadName as err:
        raise ApiError(422, str(err)) from None


@router.get(
    "/{sweep_id}/report",
    responses={
        200: {"content": {"application/json": {}}, "description": "report.json"},
        404: {"model": ErrorResponse, "description": "No such sweep, or no report yet."},
    },
)
async def get_report(sweep_id: SweepId, request: Request, settings: SettingsDep) -> FileResponse:
    """The sweep's report.json (its contract: docs/report.md): 404 until the sweep succeeded."""
    sweep = await in_session(request, lambda session: _get(session, sweep_id))
    path = _folder(settings, sweep_id) / REPORT
    if sweep.status != SweepStatus.succeeded or not await run_in_threadpool(path.is_file):
        raise ApiError(404, f"report: sweep {sweep_id} has no report yet (status {sweep.status})")
    return FileResponse(path, media_type="application/json")


@router.get(
    "/{sweep_id}/plots/{name:path}",
    responses={
        200: {"content": {"image/png": {}}, "description": "The plot."},
        404: {"model": ErrorResponse, "description": "No such sweep, or no such plot yet."},
    },
)
async def get_plot(
    sweep_id: SweepId,
    name: Annotated[str, Path(description="goldilocks, training_curves, metric_vs_lr (.png)")],
    request: Request,
    settings: SettingsDep,
) -> FileResponse:
    """A plot PNG of the sweep (the names are listed in the sweep's `plot_urls`)."""
    await in_session(request, lambda session: _get(session, sweep_id))
    try:
        path = plot_path(_folder(settings, sweep_id), name)
    except BadName as err:
        raise ApiError(422, str(err)) from None
    if not await run_in_threadpool(path.is_file):
        raise ApiError(404, f"name: sweep {sweep_id} has no plot '{name}' (yet)")
    return FileResponse(path, media_type="image/png")
