"""Fleet page (every gateway, filtered/sorted/paginated by the database) and one gateway's page."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import HTMLResponse
from sqlalchemy import Engine

from cloud.auth import Principal
from cloud.console import alert_pages
from cloud.console.html import (
    Html,
    age,
    esc,
    href,
    join,
    link,
    page,
    pager,
    select,
    sortable,
    table,
    tag,
    when,
)
from cloud.console_schemas import FleetGateway
from cloud.db.alarm_repo import AlarmFilter
from cloud.services import alarms, fleet
from cloud.settings import CloudSettings

PATH = "/console/fleet"
_COLUMNS = (("gateway_id", "Gateway"), ("site", "Site"), ("status", "Status"), ("last_contact", "Last contact"),
            ("outbox_depth", "Outbox"), ("oldest_unsynced", "Oldest unsynced"), ("agent_version", "Agent"),
            (None, "Models"), ("rejected", "Rejected updates"))


def status_badge(status: str) -> Html:
    return tag("span", status, class_=f"badge status-{status}")


def _models(g: FleetGateway) -> Html:
    return join(tag("span", f"{m.task} v{m.version or '-'}" + (f" → v{m.pending_version}" if m.pending_version else "")
                    + (f" (shadow v{m.shadow_version})" if m.shadow_version else ""), class_="chip")
                for m in g.models)


def _rejected(g: FleetGateway) -> Html:
    return join(tag("span", f"{r.task} v{r.version}: {r.code or 'rejected'}", class_="chip bad", title=r.reason)
                for r in g.rejected)


def _row(g: FleetGateway) -> list[Any]:
    return [link(f"/console/gateways/{g.gateway_id}", g.gateway_id), g.site, status_badge(g.status),
            when(g.last_contact_ts), "-" if g.outbox_depth is None else f"{g.outbox_depth:,}",
            age(g.oldest_unsynced_age_s), g.agent_version or "-", _models(g), _rejected(g)]


def fleet_page(engine: Engine, settings: CloudSettings, principal: Principal, params: dict[str, Any]) -> HTMLResponse:
    f = fleet.FleetFilter(status=params.get("status"), site=params.get("site"), q=params.get("q"),
                          rejected=True if params.get("rejected") else None)
    sort, descending = params.get("sort") or "gateway_id", bool(params.get("desc"))
    offset, limit = int(params.get("offset") or 0), int(params.get("limit") or 50)
    result = fleet.list_fleet(engine, fleet.Thresholds.from_settings(settings), f, sort=sort, descending=descending,
                              offset=offset, limit=limit)
    chips = join(link(href(PATH, params, status=None if params.get("status") == s else s, offset=None),
                      [status_badge(s), f" {result.by_status[s]:,}"],
                      class_="chip-link" + (" on" if params.get("status") == s else ""))
                 for s in ("online", "late", "offline"))
    sites = [("", "every site")] + [(s, s) for s in fleet.sites(engine)]
    filters = Html(f"""<form class="filters" method="get" action="{PATH}">
{select("site", sites, params.get("site"), "Site")}
<label>Search <input type="search" name="q" value="{esc(params.get("q") or "")}" placeholder="gateway or site"></label>
<label><input type="checkbox" name="rejected" value="true"{" checked" if params.get("rejected") else ""}> rejected an update</label>
{'' if not params.get("status") else f'<input type="hidden" name="status" value="{esc(params["status"])}">'}
<button type="submit">Filter</button></form>""")
    headers = [sortable(PATH, params, key, title, sort, descending) if key else title for key, title in _COLUMNS]
    body = join([
        tag("p", [chips, Html(f' <span class="hint">late after {result.late_after_s:g} s, offline after '
                              f'{result.offline_after_s:g} s without a sync or report</span>')], class_="chips"),
        filters, table(headers, (_row(g) for g in result.items), id="fleet", class_="grid"),
        pager(PATH, params, result.total, offset, limit)])
    return page("Fleet", principal, "fleet", body)


def gateway_page(engine: Engine, settings: CloudSettings, principal: Principal, gateway_id: str) -> HTMLResponse:
    detail = fleet.gateway_detail(engine, fleet.Thresholds.from_settings(settings), gateway_id,
                                  window_ms=fleet.DEVICE_WINDOW_MS)
    g = detail.gateway
    stored = ", ".join(f"{n:,} {kind}" for kind, n in g.counts.items() if n) or "nothing yet"
    facts = table(["Status", "Site", "Last sync", "Last report", "Outbox", "Oldest unsynced", "Broker", "Agent",
                   "Stored"],
                  [[status_badge(g.status), g.site, when(g.last_sync_ts), when(g.last_report_ts),
                    "-" if g.outbox_depth is None else f"{g.outbox_depth:,}", age(g.oldest_unsynced_age_s),
                    {None: "-", True: "connected", False: "disconnected"}[g.mqtt_connected], g.agent_version or "-",
                    stored]],
                  class_="facts")
    days = fleet.DEVICE_WINDOW_MS // 86_400_000
    devices = table(["Device", f"Messages ({days} d)", "Last message", "Metrics"], [
        [d.device_id, f"{d.messages:,}", when(d.last_ts),
         join(link(href("/console/streams", {}, device_id=d.device_id, metric=m), m, class_="chip") for m in d.metrics)]
        for d in detail.devices], id="devices", class_="grid")
    recent = alarms.list_alarms(engine, AlarmFilter(gateway_id=gateway_id), limit=20)
    tasks = table(["Task", "State", "Running", "Pending", "Shadow", "Rejected", "Reason"], [
        [t.get("task"), t.get("state"), t.get("current_version") or "-", t.get("pending_version") or "-",
         t.get("shadow_version") or "-", t.get("rejected_version") or "-", t.get("rejected_reason") or ""]
        for t in (detail.report or {}).get("tasks", [])], class_="grid")
    report = Html("<p>No model report yet.</p>") if detail.report is None else join([
        tasks, tag("details", [tag("summary", "The whole report"),
                               tag("pre", _pretty(detail.report))])])
    window = tag("p", f"Devices heard from in the {days} days (device time) before the last sync; the gateway's "
                      "totals are under Stored.", class_="hint")
    body = join([facts, tag("h2", "Devices and streams"), window, devices,
                 tag("h2", "Recent alerts"), alert_pages.alarm_table(recent.items, principal, selectable=False),
                 link(href("/console/alerts", {}, gateway_id=gateway_id), "all alerts of this gateway"),
                 tag("h2", "Model report"), report])
    return page(f"Gateway {gateway_id}", principal, "fleet", body)


def _pretty(doc: Any) -> str:
    return json.dumps(doc, indent=2, sort_keys=True)
