"""``GET /healthz``: liveness and database reachability, no authentication."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from cloud.db.engine import ping
from cloud.deps import EngineDep, SettingsDep
from cloud.schemas import Health

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz(engine: EngineDep, settings: SettingsDep) -> Health | JSONResponse:
    try:
        ping(engine)
    except SQLAlchemyError as exc:
        log.warning("health check failed: %s", exc)
        body = Health(status="unavailable", database=settings.backend, detail=type(exc).__name__)
        return JSONResponse(body.model_dump(), status_code=503)
    return Health(status="ok", database=settings.backend)
