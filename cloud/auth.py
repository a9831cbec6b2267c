"""Bearer-token authentication and role checks.

Tokens are random secrets; only their sha256 is stored, with a role: ``admin``, ``planner``,
``operator`` (fleet and alerts: acknowledges and shelves, no admin rights) or ``gateway`` (bound to
one gateway id). The admin token from the settings is always an admin.
Use ``Depends(require_role("admin", "planner"))`` on any route that needs a role.

The console (``/console``) logs in with the same tokens and keeps the token in an HttpOnly,
``SameSite=Strict`` cookie (:data:`CONSOLE_COOKIE`); its scripts call this API with that cookie and
the header :data:`CONSOLE_HEADER`. A cookie counts only together with that header: a cross-site page
can neither send the cookie (SameSite) nor set the header without a CORS preflight this API never
grants, so the cookie opens no CSRF hole.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, get_args

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from cloud.db import repo
from cloud.db.engine import reader
from cloud.deps import CloudState, EngineDep, SettingsDep, get_state, state_of
from cloud.errors import ApiError

Role = Literal["admin", "planner", "operator", "gateway"]
#: Roles a person logs in with (the console); gateway tokens are for agents only.
HUMAN_ROLES: Final[tuple[str, ...]] = ("admin", "planner", "operator")
CONSOLE_COOKIE: Final = "edgehouse_console"
CONSOLE_HEADER: Final = "x-edgehouse-console"
ROLES: Final[tuple[str, ...]] = get_args(Role)
_CHALLENGE: Final = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a role, and for gateway tokens the one gateway they speak for."""

    role: Role
    gateway_id: str | None = None
    token_id: int | None = None

    @property
    def label(self) -> str:
        """Who acted, as recorded in ``created_by``/``promoted_by``/audit columns.

        ``admin`` for the settings' admin token, ``<role>:token:<id>`` for a stored token.
        """
        return self.role if self.token_id is None else f"{self.role}:token:{self.token_id}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random secret (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def reserved_token_hashes(admin_token: str) -> frozenset[str]:
    """Hashes of secrets that must never be issued as stored tokens (they would shadow the admin)."""
    return frozenset({hash_token(admin_token)})


class PrincipalCache:
    """The principals of stored tokens found recently, by the token's sha256, each for ``ttl_s`` seconds: a
    gateway syncing every few seconds then costs one token query per ``ttl_s``, not one per batch (a
    connection checkout, its ping and a transaction: about 1 ms of API and database CPU). Only tokens
    found are kept; an unknown one is looked up every time. Bounded: beyond ``max_entries`` the oldest go."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> Principal | None:
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if time.monotonic() - entry[0] > self.ttl_s:
                del self._entries[digest]
                return None
            return entry[1]

    def put(self, digest: str, principal: Principal) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            self._entries.pop(digest, None)
            self._entries[digest] = (time.monotonic(), principal)  # insertion order: oldest first
            while len(self._entries) > self.max_entries:
                del self._entries[next(iter(self._entries))]


def _without_lookup(digest: str, admin_token: str, cache: PrincipalCache | None) -> Principal | None:
    """The principal of a token (by its sha256) known without the database: the admin's, or a cached one."""
    if hmac.compare_digest(digest, hash_token(admin_token)):
        return Principal(role="admin")
    return cache.get(digest) if cache is not None else None


def principal_for(token: str, admin_token: str, engine: Engine,
                  cache: PrincipalCache | None = None) -> Principal | None:
    """The principal a bearer token stands for, or None when it is unknown."""
    digest = hash_token(token)
    known = _without_lookup(digest, admin_token, cache)
    if known is not None:
        return known
    with reader(engine) as conn:
        row = repo.find_token(conn, digest)
    if row is None or row.role not in ROLES:
        return None
    role: Role = row.role  # type: ignore[assignment]  # checked against ROLES above
    principal = Principal(role=role, gateway_id=row.gateway_id, token_id=row.token_id)
    if cache is not None:
        cache.put(digest, principal)
    return principal


_bearer_scheme = HTTPBearer(auto_error=False,
                            description="Bearer token (admin, planner, operator or gateway)")


def console_token(request: Request) -> str | None:
    """The console's cookie token, when the request also carries :data:`CONSOLE_HEADER` (see the module doc)."""
    if request.headers.get(CONSOLE_HEADER) != "1":
        return None
    token = request.cookies.get(CONSOLE_COOKIE)
    return token or None


def _bearer_token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    """The request's bearer token (or the console's cookie); 401 when there is none."""
    token: str | None = None
    if credentials is not None and credentials.scheme.lower() == "bearer" and credentials.credentials:
        token = credentials.credentials
    elif credentials is None:
        token = console_token(request)
    if token is None:
        raise ApiError(401, "missing bearer token", field="authorization", headers=_CHALLENGE)
    return token


def _known(principal: Principal | None) -> Principal:
    if principal is None:
        raise ApiError(401, "unknown token", field="authorization", headers=_CHALLENGE)
    return principal


def authenticate_now(request: Request, credentials: HTTPAuthorizationCredentials | None, state: CloudState
                     ) -> Principal:
    """:func:`authenticate` outside dependency injection (blocking: may query the database)."""
    assert state.engine is not None
    token = _bearer_token(request, credentials)
    return _known(principal_for(token, state.settings.admin_token.get_secret_value(), state.engine,
                                state.principals))


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)],
    engine: EngineDep,
    settings: SettingsDep,
    state: Annotated[CloudState, Depends(get_state)],
) -> Principal:
    """The caller's principal; 401 when the token is missing or unknown.

    The admin token and a token in :class:`PrincipalCache` are answered here, on the event loop; only a
    lookup goes to the thread pool (a thread hop per request saved for a syncing gateway)."""
    token = _bearer_token(request, credentials)
    admin = settings.admin_token.get_secret_value()
    known = _without_lookup(hash_token(token), admin, state.principals)
    if known is not None:
        return known
    return _known(await run_in_threadpool(principal_for, token, admin, engine, state.principals))


class RoleCheck:
    """A dependency that admits only callers with one of ``roles`` (403 otherwise).

    A class (not a closure) so that an error raised before dependencies run (a body that is not
    JSON) can still be answered in the right order: see :func:`authorize_first`.
    """

    def __init__(self, *roles: Role) -> None:
        if not roles or any(r not in ROLES for r in roles):
            raise ValueError(f"roles must be among {ROLES}, got {roles}")
        self.roles = roles
        self._allowed = frozenset(roles)

    async def __call__(self, principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        return self.authorize(principal, {})  # async: no thread hop for this check (cloud.deps)

    def authorize(self, principal: Principal, _path_params: Mapping[str, Any]) -> Principal:
        if principal.role not in self._allowed:
            raise ApiError(403, f"role {principal.role!r} may not do this (needs {' or '.join(self.roles)})",
                           field="authorization")
        return principal


class OwnGatewayCheck(RoleCheck):
    """:class:`RoleCheck` on a ``/{gateway_id}`` route: a gateway token acts only for its own gateway."""

    async def __call__(self, principal: Annotated[Principal, Depends(authenticate)],  # type: ignore[override]
                       gateway_id: Annotated[str, Path()]) -> Principal:
        return self.authorize(principal, {"gateway_id": gateway_id})

    def authorize(self, principal: Principal, path_params: Mapping[str, Any]) -> Principal:
        super().authorize(principal, path_params)
        if principal.role == "gateway" and principal.gateway_id != path_params.get("gateway_id"):
            raise ApiError(403, "a gateway token may only act for its own gateway", field="gateway_id")
        return principal


def require_role(*roles: Role) -> RoleCheck:
    """A dependency that admits only callers with one of ``roles`` (403 otherwise)."""
    return RoleCheck(*roles)


def _route_checks(dependant: Any) -> list[Any]:
    """Every authentication dependency of a route's dependency tree, outermost first."""
    found = []
    for dep in dependant.dependencies:
        if isinstance(dep.call, RoleCheck) or dep.call is authenticate:
            found.append(dep.call)
        found.extend(_route_checks(dep))
    return found


def authorize_first(request: Request) -> None:
    """Run the route's authentication and role checks now; raise their 401/403 (if any).

    FastAPI reads and decodes a JSON body before it solves dependencies, so a body that is not
    JSON would otherwise be answered before the caller was even authenticated (a gateway token on
    an admin route got 400 instead of 403). The error handlers call this first.
    """
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    checks = _route_checks(dependant)
    if not checks:
        return
    state = state_of(request)
    if state.engine is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    credentials = (HTTPAuthorizationCredentials(scheme=scheme, credentials=token.strip())
                   if scheme and token.strip() else None)
    principal = authenticate_now(request, credentials, state)
    for check in checks:
        if isinstance(check, RoleCheck):
            check.authorize(principal, request.path_params)


AdminDep = Annotated[Principal, Depends(require_role("admin"))]
#: Any person's role: admin, planner or operator (reads alerts, forecasts, the fleet and its streams).
ReaderDep = Annotated[Principal, Depends(require_role("admin", "planner", "operator"))]
#: Who manages alerts (acknowledge, shelve, comment): operators and admins.
OperatorDep = Annotated[Principal, Depends(require_role("admin", "operator"))]
GatewayDep = Annotated[Principal, Depends(require_role("gateway"))]
AnyRoleDep = Annotated[Principal, Depends(authenticate)]
#: Any role on a ``/{gateway_id}`` route; a gateway token only for its own gateway.
AnyRoleOwnGatewayDep = Annotated[Principal, Depends(OwnGatewayCheck("admin", "planner", "operator", "gateway"))]
#: An admin, or the gateway named by the route's ``{gateway_id}``.
OwnGatewayOrAdminDep = Annotated[Principal, Depends(OwnGatewayCheck("admin", "gateway"))]
