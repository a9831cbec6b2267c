"""Unknown query parameters are refused, like unknown body fields and unknown settings.

A misspelled filter (``?gateway=gw-a`` for ``?gateway_id=gw-a``) would otherwise be ignored and the
answer silently cover everything. The app runs :func:`reject_unknown_query` on every route: a query
parameter the route does not declare gets 422 naming it (after the route's own authentication and
role checks, so a caller who may not call the route still learns only that). So does a parameter given
twice (``?site=a&site=b``): no route takes lists in its query, and taking the last one silently would
answer a different question than the caller asked.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from cloud.auth import authorize_first
from cloud.errors import ApiError
from protocols.untrusted import clip


def _declared(request: Request) -> frozenset[str] | None:
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    cache: dict[int, frozenset[str]] = request.app.state.__dict__.setdefault("_declared_query", {})
    key = id(route)
    if key not in cache:
        cache[key] = frozenset(_query_names(dependant))
    return cache[key]


def _query_names(dependant: Any) -> set[str]:
    """Query parameter names of a route's dependency tree."""
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def reject_unknown_query(request: Request) -> None:
    declared = _declared(request)
    if declared is None:
        return
    unknown = sorted(k for k in request.query_params if k not in declared)
    if unknown:
        authorize_first(request)
        allowed = ", ".join(sorted(declared)) or "none"
        raise ApiError(422, f"unknown query parameter (this route takes: {allowed})", field=clip(unknown[0], 64))
    repeated = sorted(k for k in declared if len(request.query_params.getlist(k)) > 1)
    if repeated:
        authorize_first(request)
        raise ApiError(422, "query parameter given more than once", field=clip(repeated[0], 64))
