"""The console's routes under ``/console`` (not part of the API's OpenAPI): log-in, pages, downloads, assets.

Pages are rendered here from the same services the API uses; their buttons call the JSON API. Each page
names the roles that may open it (:data:`cloud.console.html.NAV`); others get a 403 page.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cloud.auth import Principal
from cloud.console import alert_pages, chart_pages, fleet_pages, model_pages, route_pages, session
from cloud.console.html import NAV, page, tag
from cloud.console.session import ConsolePrincipal
from cloud.console_schemas import FleetSort, GatewayStatus, RecordIdStr
from cloud.deps import EngineDep, SettingsDep
from cloud.errors import ApiError
from cloud.schemas import MAX_API_INT, GatewayIdStr
from cloud.services import route_jobs

router = APIRouter(prefix="/console", include_in_schema=False)
_ASSETS: Final = {"console.css": "text/css", "console.js": "text/javascript", "charts.js": "text/javascript",
                  "routes.js": "text/javascript"}
_PAGE_ROLES: Final = {item.path: item.roles for item in NAV}
Name = Annotated[str | None, Query(max_length=64)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
Limit = Annotated[int, Query(ge=1, le=500)]


def _allowed(principal: Principal, page_path: str) -> HTMLResponse | None:
    """A 403 page when the role may not open ``page_path``."""
    if principal.role in _PAGE_ROLES[page_path]:
        return None
    body = tag("p", f"The {principal.role} role cannot open this page.", class_="error")
    return page("Not allowed", principal, "", body, status_code=403)


@router.get("")
@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/console/fleet", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(next_: Annotated[str | None, Query(alias="next", max_length=500)] = None) -> HTMLResponse:
    return session.login_form(next_)


@router.post("/login")
async def login(request: Request, engine: EngineDep, settings: SettingsDep) -> Response:
    return await session.log_in(request, engine, settings)


@router.post("/logout")
def logout() -> Response:
    return session.log_out()


@router.get("/static/{name}")
def asset(name: Annotated[str, Path(max_length=40)]) -> Response:
    if name not in _ASSETS:
        raise ApiError(404, f"no console asset {name!r}", field="name")
    data = resources.files("cloud.console").joinpath("static", name).read_bytes()
    return Response(data, media_type=_ASSETS[name], headers={"Cache-Control": "public, max-age=300"})


@router.get("/fleet", response_class=HTMLResponse)
def fleet(principal: ConsolePrincipal, engine: EngineDep, settings: SettingsDep,
          status: Annotated[GatewayStatus | None, Query()] = None, site: Name = None, q: Name = None,
          rejected: Annotated[bool | None, Query()] = None, sort: Annotated[FleetSort, Query()] = "gateway_id",
          desc: Annotated[bool, Query()] = False, offset: Offset = 0, limit: Limit = 50) -> HTMLResponse:
    params = _params(status=status, site=site, q=q, rejected="true" if rejected else None,
                     sort=None if sort == "gateway_id" else sort, desc="true" if desc else None,
                     offset=offset or None, limit=None if limit == 50 else limit)
    return _allowed(principal, "fleet") or fleet_pages.fleet_page(engine, settings, principal, params)


@router.get("/gateways/{gateway_id}", response_class=HTMLResponse)
def gateway(gateway_id: Annotated[GatewayIdStr, Path()], principal: ConsolePrincipal, engine: EngineDep,
            settings: SettingsDep) -> HTMLResponse:
    return _allowed(principal, "fleet") or fleet_pages.gateway_page(engine, settings, principal, gateway_id)


@router.get("/alerts", response_class=HTMLResponse)
def alerts(principal: ConsolePrincipal, engine: EngineDep, site: Name = None,
           gateway_id: Annotated[GatewayIdStr | None, Query()] = None,
           severity: Annotated[Literal["info", "warning", "critical"] | None, Query()] = None,
           kind: Annotated[str | None, Query(max_length=16)] = None,
           state: Annotated[Literal["active", "cleared"] | None, Query()] = None,
           ack: Annotated[Literal["unacked", "acked"] | None, Query()] = None,
           shelved: Annotated[Literal["hide", "only"] | None, Query()] = None,
           offset: Offset = 0, limit: Limit = 50) -> HTMLResponse:
    params = _params(site=site, gateway_id=gateway_id, severity=severity, kind=kind, state=state, ack=ack,
                     shelved=shelved, offset=offset or None, limit=None if limit == 50 else limit)
    return _allowed(principal, "alerts") or alert_pages.alerts_page(engine, principal, params)


@router.get("/alarms/{gateway_id}/{alarm_id}", response_class=HTMLResponse)
def alarm(gateway_id: Annotated[GatewayIdStr, Path()], alarm_id: Annotated[RecordIdStr, Path()],
          principal: ConsolePrincipal, engine: EngineDep) -> HTMLResponse:
    return _allowed(principal, "alerts") or alert_pages.alarm_page(engine, principal, gateway_id, alarm_id)


@router.get("/streams", response_class=HTMLResponse)
def streams(principal: ConsolePrincipal, engine: EngineDep, device_id: Name = None,
            metric: Annotated[str | None, Query(max_length=32)] = None,
            from_: Annotated[int | None, Query(alias="from", ge=0, le=MAX_API_INT)] = None,
            to: Annotated[int | None, Query(ge=0, le=MAX_API_INT)] = None) -> HTMLResponse:
    return _allowed(principal, "streams") or chart_pages.streams_page(
        engine, principal, _params(device_id=device_id, metric=metric, from_=from_, to=to))


@router.get("/demand", response_class=HTMLResponse)
def demand(principal: ConsolePrincipal, engine: EngineDep, site: Name = None, sku: Name = None) -> HTMLResponse:
    return _allowed(principal, "demand") or chart_pages.demand_page(engine, principal, _params(site=site, sku=sku))


@router.get("/routes", response_class=HTMLResponse)
def routes(principal: ConsolePrincipal, engine: EngineDep) -> HTMLResponse:
    return _allowed(principal, "routes") or route_pages.routes_page(engine, principal)


JobPath = Annotated[str, Path(min_length=1, max_length=64)]


@router.get("/routes/{job_id}", response_class=HTMLResponse)
def route_job(job_id: JobPath, principal: ConsolePrincipal, engine: EngineDep, settings: SettingsDep) -> HTMLResponse:
    return _allowed(principal, "routes") or route_pages.job_page(engine, settings, principal, job_id)


@router.get("/routes/{job_id}/view.json")
def route_view(job_id: JobPath, principal: ConsolePrincipal, engine: EngineDep, settings: SettingsDep) -> Response:
    """The plan's geometry for the map and the timeline (loaded after the page's first paint)."""
    return _allowed(principal, "routes") or Response(
        json.dumps(route_pages.plan_view(engine, settings, job_id), separators=(",", ":")),
        media_type="application/json", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/routes/{job_id}/{name}")
def route_download(job_id: JobPath, name: Annotated[Literal["plan.json", "plan.geojson", "plot.png"], Path()],
                   principal: ConsolePrincipal, engine: EngineDep) -> Response:
    refused = _allowed(principal, "routes")
    if refused is not None:
        return refused
    disposition = {"Content-Disposition": f'attachment; filename="{job_id}-{name}"'}
    if name == "plan.json":
        plan = route_jobs.result(engine, job_id)
        return Response(plan.model_dump_json(indent=2), media_type="application/json", headers=disposition)
    if name == "plan.geojson":
        return Response(json.dumps(route_jobs.geojson(engine, job_id)), media_type="application/geo+json",
                        headers=disposition)
    return Response(route_jobs.plot(engine, job_id), media_type="image/png", headers=disposition)


@router.get("/models", response_class=HTMLResponse)
def models(principal: ConsolePrincipal, engine: EngineDep) -> HTMLResponse:
    return _allowed(principal, "models") or model_pages.models_page(engine, principal)


@router.get("/rollouts/{rollout_id}", response_class=HTMLResponse)
def rollout(rollout_id: Annotated[int, Path(ge=1, le=MAX_API_INT)], principal: ConsolePrincipal,
            engine: EngineDep) -> HTMLResponse:
    return _allowed(principal, "models") or model_pages.rollout_page(engine, principal, rollout_id)


def _params(**values: Any) -> dict[str, Any]:
    """A page's current query (without defaults), for links that keep it."""
    return {("from" if k == "from_" else k): v for k, v in values.items() if v is not None and v != ""}
