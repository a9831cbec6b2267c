"""The app factory: ``create_app(settings)`` wires routers, error handlers and a lifespan.

The lifespan builds the database engine, applies pending migrations (cloud.db.migrate), and disposes of the engine on
shutdown; nothing lives at module level, so several apps (tests, replicas) can coexist.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi

from cloud.api import (
    alarms,
    fleet,
    gateway_groups,
    gateways,
    health,
    model_signing,
    model_updates,
    models,
    records,
    replenishment,
    rollouts,
    routes,
    stock,
    sync,
    timeseries,
    tokens,
)
from cloud.api import train_jobs as train_jobs_api
from cloud.api.strict_query import reject_unknown_query
from cloud.auth import PrincipalCache, authorize_first
from cloud.console import router as console
from cloud.db.engine import build_engine
from cloud.db.migrate import MigrationError, ensure_schema
from cloud.deps import CloudState
from cloud.errors import install_error_handlers
from cloud.gc_tuning import apply_gen0_threshold
from cloud.jobs.worker import Worker
from cloud.services.model_registry import ensure_shipped_defaults
from cloud.services.model_signing import Keyring
from cloud.services.partition_upkeep import PartitionUpkeep
from cloud.services.rollout_controller import RolloutController
from cloud.services.route_jobs import RouteSolver
from cloud.settings import CloudSettings
from protocols import SyncBatch

log = logging.getLogger(__name__)


def create_app(settings: CloudSettings) -> FastAPI:
    """A new cloud API app for ``settings``; its database is opened when the app starts."""
    keyring = Keyring.from_settings(settings)
    state = CloudState(settings=settings, keyring=keyring, route_solver=RouteSolver(),
                       principals=PrincipalCache(settings.auth_cache_s) if settings.auth_cache_s > 0 else None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        apply_gen0_threshold(settings.gc_gen0_threshold)
        engine = build_engine(settings.database_url, pool_size=settings.db_pool_size)
        background: list[RolloutController | Worker | PartitionUpkeep] = []  # stopped in reverse order
        try:
            try:
                ensure_schema(engine, apply=settings.migrate_on_start)
            except MigrationError as exc:  # one line an operator reads first (tracebacks are cut in the log)
                log.error("cannot start: %s", exc)
                raise
            state.engine = engine
            ensure_shipped_defaults(engine)
            background.append(PartitionUpkeep(engine, settings.readings_retention_days, settings.partition_upkeep_s))
            background[-1].start()
            if settings.embedded_rollout_controller:
                background.append(RolloutController(engine, keyring, settings.rollout_tick_s))
                background[-1].start()
            if settings.embedded_worker:
                state.worker = Worker(settings, engine)
                background.append(state.worker)
                background[-1].start()
            log.info("cloud API ready on %s (%s)%s%s", settings.backend,
                     engine.url.render_as_string(hide_password=True),
                     "; embedded job worker" if settings.embedded_worker else "",
                     "; embedded rollout controller" if settings.embedded_rollout_controller else "")
            yield
        finally:
            while background:
                background.pop().stop()
            state.worker = None
            state.engine = None
            engine.dispose()

    app = FastAPI(
        title="Edgehouse cloud",
        version="0.1.0",
        description="Sync ingest from gateways, gateway registry and synced alerts/forecasts.",
        lifespan=lifespan,
        docs_url="/docs",
        dependencies=[Depends(reject_unknown_query)],
    )
    app.state.cloud = state
    install_error_handlers(app, authorize_first)
    app.include_router(train_jobs_api.router)  # before any /models/{...} route, so /models/jobs matches here
    for router in (health.router, sync.router, gateways.router, tokens.router, records.router, routes.router,
                   replenishment.router, models.router, model_signing.router, model_updates.router,
                   rollouts.router, gateway_groups.router, timeseries.router, fleet.router, alarms.router,
                   stock.router):
        app.include_router(router)
    app.include_router(console.router)  # /console: pages for people, not in the OpenAPI
    _document_sync_batch(app)
    return app


def _document_sync_batch(app: FastAPI) -> None:
    """Publish ``protocols.SyncBatch`` in the OpenAPI document.

    ``POST /api/v1/sync`` reads and validates its (usually gzip) body itself, so FastAPI cannot
    derive the request schema; the route refers to ``#/components/schemas/SyncBatch``, added here.
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            batch = SyncBatch.model_json_schema(ref_template="#/components/schemas/{model}")
            components = doc.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in batch.pop("$defs", {}).items():
                components.setdefault(name, schema)
            components["SyncBatch"] = batch
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
