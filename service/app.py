"""The FastAPI app: `create_app(settings)`; `goldilocks serve` runs it with uvicorn.

Start-up brings the job store's schema to head (alembic), starts the runner thread (which
first recovers sweeps a previous process left running) and imports the validation stack
(JAX) so the first submit is not the slow one. Shutdown interrupts running drivers; their
sweeps stay `running` and are resumed by the next start.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse

from service import datasets, plugins, store
from service.deps import AuthDep
from service.errors import BodySizeLimit, install_error_handlers
from service.health import HealthChecks
from service.routes import datasets as dataset_routes
from service.routes import health, sweeps
from service.runner import Runner
from service.settings import ServiceSettings, get_settings

log = logging.getLogger(__name__)
VERSION = "0.1.0"


def _warm_up(settings: ServiceSettings) -> None:
    """Import the validation stack (JAX, optax, flax) and validate a tiny spec once: seconds
    that would otherwise fall on the first submit."""
    from service.submit import validate

    warm = {
        "name": "warm-up",
        "data": {"name": "iris"},
        "model": {"name": "linear"},
        "loss": "cross_entropy",
        "train": {"steps": 1, "eval_every": 1, "batch_size": 8},
    }
    try:
        validate(warm, settings)
    except Exception as err:  # never a reason not to start
        log.warning("warm-up validation failed: %s", err)


def _check_plugin_dirs(settings: ServiceSettings) -> None:
    """Say at start-up which code HTTP specs may name (service/plugins.py)."""
    for folder in settings.plugin_dirs:
        if not folder.is_dir():
            log.warning("GOLDILOCKS_PLUGIN_PATH: %s is not a folder", folder)
    plugins.ensure_importable(settings)
    if settings.plugin_dirs:
        log.info("plugin folders: %s", ", ".join(map(str, settings.plugin_dirs)))


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = store.make_engine(settings.db_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.sweeps_dir.mkdir(parents=True, exist_ok=True)
        await run_in_threadpool(datasets.clean_incoming, settings)
        _check_plugin_dirs(settings)
        await run_in_threadpool(store.upgrade_to_head, settings.db_url)
        await run_in_threadpool(_warm_up, settings)
        app.state.runner.start()
        if settings.token() is None:
            log.warning(
                "GOLDILOCKS_API_TOKEN is not set: the API is open to anyone who can reach it"
            )
        log.info("goldilocks service ready: executor %s, store %s", settings.executor,
                 engine.dialect.name)  # fmt: skip
        try:
            yield
        finally:
            await run_in_threadpool(app.state.runner.stop)
            engine.dispose()

    app = FastAPI(
        title="Goldilocks",
        version=VERSION,
        summary="Learning-rate sweeps over HTTP: submit, watch, cancel, read the verdict.",
        lifespan=lifespan,
        # Served below, behind the token like every endpoint but /healthz.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.sessions = store.session_factory(engine)
    app.state.runner = Runner(settings, app.state.sessions)
    app.state.health = HealthChecks(settings, engine)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        limits={"/datasets": (settings.max_upload_bytes, "GOLDILOCKS_MAX_UPLOAD_BYTES")},
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(sweeps.router)
    app.include_router(dataset_routes.router)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[AuthDep])
    def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[AuthDep])
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Goldilocks API")

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, plus the sweep spec (the submit body is parsed by hand: JSON or YAML)."""
    if app.openapi_schema:
        return app.openapi_schema
    from sweeps.spec import SweepSpec

    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    spec_schema = SweepSpec.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    defs = spec_schema.pop("$defs", {})
    clash = set(defs) & set(components)
    if clash:  # a response model named like a spec model would silently replace it
        raise RuntimeError(f"OpenAPI component names used twice: {sorted(clash)}")
    components.update(defs)
    components["SweepSpec"] = spec_schema
    app.openapi_schema = schema
    return schema
