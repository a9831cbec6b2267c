"""Alerts page (ISA-18.2 states, filters, flood per site, acknowledge one or many, shelve, comment) and
one alarm's page with its audit trail. Buttons only for roles that may manage alarms."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

from fastapi.responses import HTMLResponse
from sqlalchemy import Engine

from cloud.auth import Principal
from cloud.console.html import Html, can, esc, join, link, page, pager, select, table, tag, when
from cloud.console_schemas import AlarmOut, SiteFlood
from cloud.db.alarm_repo import AlarmFilter
from cloud.services import alarms, fleet

PATH = "/console/alerts"
#: Alert fields shown in their own columns; every other field the gateway sent is listed as a detail.
_SHOWN: Final = frozenset({"schema", "v", "alert_id", "gateway_id", "kind", "state", "severity", "ts", "message",
                           "device_id", "metric"})
_ISA_TEXT: Final = {"unack_active": "active · unacknowledged", "ack_active": "active · acknowledged",
                    "unack_cleared": "cleared · unacknowledged", "normal": "cleared · acknowledged"}


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_value(x) for x in v[:12]) + (" …" if len(v) > 12 else "")
    if isinstance(v, dict):
        return "; ".join(f"{k}={_value(x)}" for k, x in list(v.items())[:12])
    return str(v)


def extra_fields(alert: dict[str, Any]) -> Html:
    """Every field beyond the common ones (score, expected vs observed, window, contributions, …)."""
    items = [(k, v) for k, v in sorted(alert.items()) if k not in _SHOWN and v is not None]
    return Html("<dl class=\"extra\">" + join(
        Html(f"<dt>{esc(k)}</dt><dd>{_clock(v) if k.endswith('_ts') and isinstance(v, int) else esc(_value(v))}</dd>")
        for k, v in items) + "</dl>")


def _clock(ms: int) -> Html:
    """A time among the alert's own fields: the time of day (UTC), the whole date on hover."""
    full = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + "Z"
    return tag("time", full[11:], datetime=full.replace(" ", "T"), title=full)


def _ref(a: AlarmOut) -> str:
    return f"{a.gateway_id}/{a.id}"


def _actions(a: AlarmOut) -> Html:
    ack = "" if a.acked else tag("button", "Acknowledge", type="button", data_action="ack", data_alarm=_ref(a))
    shelve = (tag("button", "Unshelve", type="button", data_action="unshelve", data_alarm=_ref(a)) if a.shelved
              else tag("button", "Shelve", type="button", data_action="shelve", data_alarm=_ref(a)))
    return join([ack, shelve])


def alarm_table(items: Sequence[AlarmOut], principal: Principal, selectable: bool = True) -> Html:
    manage = can(principal, "manage_alarms")
    headers: list[Any] = ["Time", "Site", "Gateway", "Severity", "Kind", "State", "Device / metric", "Message",
                          "Details"]
    if manage:
        headers.append("Actions")
    if manage and selectable:
        headers.insert(0, tag("input", type="checkbox", data_select_all="alarms", aria_label="select all"))
    rows = []
    for a in items:
        state = tag("span", _ISA_TEXT[a.isa_state], class_=f"badge isa-{a.isa_state}")
        if a.shelved:
            state = join([state, tag("span", "shelved", class_="badge shelved", title=a.shelve_reason)])
        row: list[Any] = [
            link(f"/console/alarms/{a.gateway_id}/{a.id}", when(a.ts)), a.site,
            link(f"/console/gateways/{a.gateway_id}", a.gateway_id),
            tag("span", a.alert.get("severity"), class_=f"badge sev-{a.alert.get('severity')}"), a.alert.get("kind"),
            state, " / ".join(str(x) for x in (a.alert.get("device_id"), a.alert.get("metric")) if x),
            a.alert.get("message", ""), extra_fields(a.alert)]
        if manage:
            row.append(_actions(a))
        if manage and selectable:
            row.insert(0, tag("input", type="checkbox", name="alarm", value=_ref(a), aria_label="select"))
        rows.append(row)
    return table(headers, rows, class_="grid alarms")


def flood_line(floods: Sequence[SiteFlood]) -> Html:
    return tag("p", [Html("Alarms per site, last 10 min (limit 10): ")] + [
        tag("span", f"{f.site} {f.alarms_10min}" + (" FLOOD" if f.flood else ""),
            class_="chip bad" if f.flood else "chip", data_flood_site=f.site) for f in floods], class_="chips floods")


def _filters(engine: Engine, params: dict[str, Any]) -> Html:
    sites = [("", "every site")] + [(s, s) for s in fleet.sites(engine)]
    return Html(f"""<form class="filters" method="get" action="{PATH}">
{select("site", sites, params.get("site"), "Site")}
{select("severity", [("", "any"), ("critical", "critical"), ("warning", "warning"), ("info", "info")],
        params.get("severity"), "Severity")}
{select("state", [("", "active or cleared"), ("active", "active"), ("cleared", "cleared")], params.get("state"), "State")}
{select("ack", [("", "acknowledged or not"), ("unacked", "unacknowledged"), ("acked", "acknowledged")],
        params.get("ack"), "Acknowledged")}
{select("shelved", [("", "shelved or not"), ("hide", "not shelved"), ("only", "shelved")], params.get("shelved"),
        "Shelved")}
<label>Kind <input name="kind" value="{esc(params.get("kind") or "")}" size="8" placeholder="any"></label>
{'' if not params.get("gateway_id") else f'<input type="hidden" name="gateway_id" value="{esc(params["gateway_id"])}">'}
<button type="submit">Filter</button></form>""")


def alerts_page(engine: Engine, principal: Principal, params: dict[str, Any]) -> HTMLResponse:
    f = AlarmFilter(site=params.get("site"), gateway_id=params.get("gateway_id"), severity=params.get("severity"),
                    kind=params.get("kind"), state=params.get("state"), ack=params.get("ack"),
                    shelved=params.get("shelved"))
    offset, limit = int(params.get("offset") or 0), int(params.get("limit") or 50)
    result = alarms.list_alarms(engine, f, offset=offset, limit=limit)
    summary = tag("p", f"{result.total:,} alarms: {result.active:,} active, {result.unacked:,} unacknowledged, "
                       f"{result.shelved:,} shelved", class_="summary", id="alarm-summary")
    bulk = "" if not can(principal, "manage_alarms") else tag(
        "p", [tag("button", "Acknowledge selected", type="button", data_action="ack-selected")], class_="bulk")
    body = join([flood_line(result.flood), _filters(engine, params), summary, bulk,
                 alarm_table(result.items, principal), pager(PATH, params, result.total, offset, limit),
                 _dialogs() if can(principal, "manage_alarms") else ""])
    return page("Alerts", principal, "alerts", body)


def _dialogs() -> Html:
    return Html("""<dialog id="shelve-dialog"><form method="dialog" data-form="shelve">
<h2>Shelve alarm</h2><p>It comes back by itself when the time is over.</p>
<label>For <select name="duration_s"><option value="900">15 minutes</option><option value="3600" selected>1 hour</option>
<option value="28800">8 hours</option><option value="86400">1 day</option><option value="604800">1 week</option></select></label>
<label>Reason <input name="reason" required maxlength="500"></label>
<menu><button value="cancel" formnovalidate>Cancel</button><button value="ok" data-confirm>Shelve</button></menu>
</form></dialog>""")


def alarm_page(engine: Engine, principal: Principal, gateway_id: str, alarm_id: str) -> HTMLResponse:
    a = alarms.get_alarm(engine, gateway_id, alarm_id)
    facts = alarm_table([a], principal, selectable=False)
    events = table(["When", "Who", "What", "Text", "Shelved until"], [
        [when(e.ts), e.actor, e.action, e.text or "", when(e.shelved_until) if e.shelved_until else ""]
        for e in a.events], id="events", class_="grid")
    cleared = Html(f"<p>Raised {when(a.ts)}; " + (f"cleared {when(a.cleared_ts)}" if a.cleared_ts else "still active")
                   + (f"; acknowledged {when(a.acked_ts)} by {esc(a.acked_by)}" if a.acked_ts else "") +
                   (f"; shelved until {when(a.shelved_until)} by {esc(a.shelved_by)}: {esc(a.shelve_reason)}"
                    if a.shelved else "") + "</p>")
    comment = "" if not can(principal, "manage_alarms") else Html(
        f"""<form class="inline" data-form="comment" data-alarm="{esc(_ref(a))}">
<label>Comment <input name="text" required maxlength="1000" size="60"></label><button type="submit">Add</button></form>""")
    body = join([facts, cleared, tag("h2", "Who did what"), events, comment,
                 _dialogs() if can(principal, "manage_alarms") else ""])
    return page(f"Alarm {alarm_id}", principal, "alerts", body)
