"""GET /healthz: liveness (always, no token), and readiness of the store, Ray and MLflow."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from service.schemas import ComponentHealth, Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz(
    request: Request,
    response: Response,
    require_ready: Annotated[
        bool, Query(description="Answer 503 unless ready (for a readiness probe).")
    ] = False,
) -> Health:
    """The service is live if it answers; `ready` says whether sweeps can run now."""
    checks = dict(request.app.state.health.run())
    runner = request.app.state.runner
    checks["runner"] = ComponentHealth(
        ok=runner.alive, detail=f"{runner.running_count()} driver(s) running"
    )
    ready = all(c.ok for c in checks.values())
    if require_ready and not ready:
        response.status_code = 503
    return Health(status="ok" if ready else "degraded", live=True, ready=ready, checks=checks)
