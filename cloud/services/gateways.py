"""Gateways and API tokens: registration, listing, token issue."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from cloud.auth import hash_token, new_token, reserved_token_hashes
from cloud.clock import now_ms
from cloud.db import repo
from cloud.db.engine import reader
from cloud.schemas import GatewayCreate, GatewayCreated, GatewayOut, TokenCreate, TokenCreated
from cloud.services.errors import BadRequest, Conflict, NotFound
from cloud.settings import CloudSettings, weak_token_reason


@dataclass(frozen=True, slots=True)
class TokenRules:
    """What a secret supplied for a new token must satisfy (random ones always do).

    The same weak-secret rule as the admin token (``weak_token_reason``), waived only in
    ``environment='development'``; and never a reserved secret (the configured admin token).
    """

    reserved_hashes: frozenset[str] = frozenset()
    allow_weak: bool = False

    @classmethod
    def from_settings(cls, settings: CloudSettings) -> TokenRules:
        return cls(reserved_token_hashes(settings.admin_token.get_secret_value()),
                   allow_weak=settings.environment == "development")

    def check(self, token: str) -> None:
        if hash_token(token) in self.reserved_hashes:
            raise Conflict("this token is reserved (it is the configured admin token); choose another", "token")
        reason = weak_token_reason(token)
        if reason is not None and not self.allow_weak:
            raise WeakToken(f"token {reason} (allowed only with environment='development')", "token")


class WeakToken(BadRequest):
    status_code = 422



def _gateway_out(row: repo.GatewayRow) -> GatewayOut:
    return GatewayOut(
        gateway_id=row.gateway_id, site=row.site, created_ts=row.created_ts, last_seen_ts=row.last_seen_ts,
        last_batch_id=row.last_batch_id, agent_version=row.agent_version,
        counts=row.counts,  # type: ignore[arg-type]  # keys are the record kinds
    )


def _issue(supplied: str | None, rules: TokenRules) -> str:
    if supplied is None:
        return new_token()
    rules.check(supplied)
    return supplied


def register_gateway(engine: Engine, req: GatewayCreate, rules: TokenRules) -> GatewayCreated:
    """Register a gateway and issue its token (the given one, checked against ``rules``, or a random one)."""
    token = _issue(req.token, rules)
    now = now_ms()
    with engine.begin() as conn:
        if not repo.insert_gateway(conn, req.gateway_id, req.site, now):
            raise Conflict(f"gateway {req.gateway_id!r} is already registered", "gateway_id")
        if not repo.insert_token(conn, hash_token(token), "gateway", req.gateway_id, f"gateway {req.gateway_id}",
                                 now):
            raise Conflict("this token is already in use; choose another", "token")
    return GatewayCreated(gateway_id=req.gateway_id, site=req.site, created_ts=now, token=token)


def list_gateways(engine: Engine) -> list[GatewayOut]:
    with reader(engine) as conn:
        return [_gateway_out(row) for row in repo.list_gateways(conn)]


def get_gateway(engine: Engine, gateway_id: str) -> GatewayOut:
    with reader(engine) as conn:
        row = repo.get_gateway(conn, gateway_id)
    if row is None:
        raise NotFound(f"gateway {gateway_id!r} is not registered", "gateway_id")
    return _gateway_out(row)


def create_token(engine: Engine, req: TokenCreate, rules: TokenRules) -> TokenCreated:
    """Issue an admin, planner or (extra, e.g. for rotation) gateway token."""
    if (req.role == "gateway") != (req.gateway_id is not None):
        raise BadRequest("gateway_id is required for gateway tokens and not allowed otherwise", "gateway_id")
    token = _issue(req.token, rules)
    with engine.begin() as conn:
        if req.gateway_id is not None and repo.get_gateway(conn, req.gateway_id) is None:
            raise NotFound(f"gateway {req.gateway_id!r} is not registered", "gateway_id")
        if not repo.insert_token(conn, hash_token(token), req.role, req.gateway_id, req.label, now_ms()):
            raise Conflict("this token is already in use; choose another", "token")
        found = repo.find_token(conn, hash_token(token))
    assert found is not None
    return TokenCreated(token_id=found.token_id, role=req.role, gateway_id=req.gateway_id, label=req.label,
                        token=token)
