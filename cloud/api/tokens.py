"""``POST /api/v1/tokens``: issue admin, planner or extra gateway tokens (admin only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from cloud.auth import AdminDep
from cloud.deps import EngineDep, SettingsDep
from cloud.errors import ErrorBody
from cloud.schemas import TokenCreate, TokenCreated
from cloud.services import gateways as service

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 422)}


@router.post("", status_code=201, response_model=TokenCreated, responses=_ERRORS)
def create_token(body: TokenCreate, _admin: AdminDep, engine: EngineDep, settings: SettingsDep) -> TokenCreated:
    """Issue a token for a role; the secret is in this answer only."""
    return service.create_token(engine, body, service.TokenRules.from_settings(settings))
