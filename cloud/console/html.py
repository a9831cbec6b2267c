"""HTML building for the console: escaping, the page frame with its role-filtered navigation, tables,
times, links that keep a page's filters, pagination. Everything untrusted goes through :func:`esc`."""

from __future__ import annotations

import html
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

from fastapi.responses import HTMLResponse

from cloud.auth import Principal


class Html(str):
    """Markup that is already safe (built here); plain ``str`` values are escaped."""


def esc(value: Any) -> Html:
    if isinstance(value, Html):
        return value
    return Html("" if value is None else html.escape(str(value), quote=True))


def join(parts: Iterable[Any]) -> Html:
    return Html("".join(esc(p) for p in parts))


def tag(name: str, content: Any = "", /, **attrs: Any) -> Html:
    """``<name attrs>content</name>``; ``class_`` for ``class``, ``data_x`` for ``data-x``; None/False skipped."""
    rendered = []
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        attr = key.rstrip("_").replace("_", "-")
        rendered.append(f" {attr}" if value is True else f' {attr}="{esc(value)}"')
    return Html(f"<{name}{''.join(rendered)}>{join(content) if isinstance(content, list) else esc(content)}</{name}>")


def link(target: str, text: Any, /, **attrs: Any) -> Html:
    return tag("a", text, href=target, **attrs)


@dataclass(frozen=True, slots=True)
class NavItem:
    path: str
    title: str
    roles: tuple[str, ...]


ALL: Final = ("admin", "planner", "operator")
NAV: Final = (
    NavItem("fleet", "Fleet", ALL),
    NavItem("alerts", "Alerts", ALL),
    NavItem("streams", "Streams", ALL),
    NavItem("demand", "Demand", ALL),
    NavItem("routes", "Routes", ("admin", "planner")),
    NavItem("models", "Models", ("admin",)),
)
#: What each role may do with its buttons (the API checks the same on every call).
CAN: Final = {
    "manage_alarms": ("admin", "operator"),
    "plan_routes": ("admin", "planner"),
    "manage_rollouts": ("admin",),
}


def can(principal: Principal, what: str) -> bool:
    return principal.role in CAN[what]


def page(title: str, principal: Principal, active: str, body: Any, scripts: Sequence[str] = (),
         data: Mapping[str, Any] | None = None, status_code: int = 200) -> HTMLResponse:
    """A whole console page: header with the navigation the role may use, the body, its scripts."""
    nav = join(link(f"/console/{item.path}", item.title, class_="active" if item.path == active else None)
               for item in NAV if principal.role in item.roles)
    payload = "" if data is None else (
        '<script type="application/json" id="page-data">'
        + json.dumps(data, separators=(",", ":")).replace("</", "<\\/") + "</script>")
    script_tags = "".join(f'<script src="/console/static/{esc(s)}" defer></script>' for s in ("console.js", *scripts))
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} · Edgehouse</title><link rel="stylesheet" href="/console/static/console.css">{script_tags}</head>
<body data-role="{esc(principal.role)}"><header><span class="brand">Edgehouse</span><nav>{nav}</nav>
<span class="who">{esc(principal.role)}{'' if principal.token_id is None else f' · token {principal.token_id}'}
<form method="post" action="/console/logout"><button type="submit" class="link">Log out</button></form></span></header>
<main><h1>{esc(title)}</h1>{esc(body)}</main><div id="toast" role="status" aria-live="polite"></div>{payload}</body></html>"""
    return HTMLResponse(doc, status_code=status_code, headers={"Cache-Control": "no-store"})


def table(headers: Sequence[Any], rows: Iterable[Sequence[Any]], **attrs: Any) -> Html:
    head = join(tag("th", h) for h in headers)
    body = join(Html("<tr>" + join(tag("td", c) for c in row) + "</tr>") for row in rows)
    return tag("table", [Html(f"<thead><tr>{head}</tr></thead>"), Html(f"<tbody>{body}</tbody>")], **attrs)


def when(ms: int | None) -> Html:
    """A time in UTC (``2026-12-03 08:16:37Z``) inside ``<time>``; ``-`` when unknown."""
    if ms is None:
        return Html("-")
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + "Z"
    return tag("time", text, datetime=text.replace(" ", "T"))


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def href(path: str, params: Mapping[str, Any], **changes: Any) -> str:
    """``path`` with ``params`` (a page's current query) changed by ``changes``; None drops a key."""
    merged = {k: v for k, v in {**params, **changes}.items() if v is not None and v != ""}
    return f"{path}?{urlencode(merged)}" if merged else path


def pager(path: str, params: Mapping[str, Any], total: int, offset: int, limit: int) -> Html:
    if total <= limit and offset == 0:
        return Html(f'<p class="pager">{total} in all</p>')
    first, last = offset + 1, min(offset + limit, total)
    prev = link(href(path, params, offset=max(0, offset - limit) or None), "‹ previous") if offset > 0 else ""
    nxt = link(href(path, params, offset=offset + limit), "next ›", rel="next") if offset + limit < total else ""
    return Html(f'<p class="pager">{esc(prev)} {first}–{last} of {total} {esc(nxt)}</p>')


def select(name: str, options: Sequence[tuple[str, str]], current: Any, label: str) -> Html:
    opts = join(tag("option", text, value=value, selected=(str(current or "") == value)) for value, text in options)
    return Html(f"<label>{esc(label)} <select name=\"{esc(name)}\">{opts}</select></label>")


def sortable(path: str, params: Mapping[str, Any], key: str, title: str, current: str, descending: bool) -> Html:
    """A column header that sorts by ``key`` (again: the other direction)."""
    now_desc = not descending if current == key else False
    arrow = (" ▼" if descending else " ▲") if current == key else ""
    return link(href(path, params, sort=key, desc="true" if now_desc else None, offset=None), title + arrow)
