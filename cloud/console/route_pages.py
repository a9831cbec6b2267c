"""Routes and replenishment: start a job (from the latest forecasts or an uploaded problem), the job list,
one job's progress and cancel, and its plan: map (drawn from coordinates, no tile server needed),
timeline per vehicle against the time windows with late stops marked, loads, unserved orders, downloads."""

from __future__ import annotations

from typing import Any, Final

from fastapi.responses import HTMLResponse
from sqlalchemy import Engine

from cloud.auth import Principal
from cloud.console.html import Html, can, esc, join, link, page, table, tag, when
from cloud.routing.plan import Plan, Stop
from cloud.routing.problem import Order, Problem
from cloud.services import route_jobs
from cloud.services.errors import Conflict
from cloud.settings import CloudSettings

#: What each unserved reason means, for the planner.
REASONS: Final = {
    "no_vehicle_with_skills": "no vehicle has the skills it needs",
    "exceeds_capacity": "its demand exceeds every vehicle's capacity",
    "time_window_unreachable": "no vehicle can reach it within its time windows",
    "exceeds_route_limits": "serving it would break a route's duration or distance limit",
    "penalty_cheaper_than_serving": "leaving it out costs less than serving it (optional order)",
    "no_room_in_fleet": "the fleet has no room left for it",
    "time_limit_no_solution": "the solver found no solution within the time limit",
}
_ACTIVE: Final = ("queued", "running")


def _job_row(j: route_jobs.RouteJobSummary) -> list[Any]:
    return [link(f"/console/routes/{j.id}", j.id), j.problem_name, j.orders, j.vehicles,
            tag("span", j.status, class_=f"badge job-{j.status}"), f"{j.progress:.0%}",
            "-" if j.best_cost is None else f"{j.best_cost:,.1f}", when(int(j.created_at * 1000)), j.created_by]


def routes_page(engine: Engine, principal: Principal) -> HTMLResponse:
    jobs = route_jobs.list_jobs(engine, 50)
    forms = Html("""<section class="cols">
<form class="card" data-form="replenishment-job">
<h2>Replenishment from the latest forecasts</h2>
<p>A replenishment request (depot, stores with their location and stock on hand, fleet): order quantities come from
each store's latest P90 forecast over the lead time, then they are routed as a job.</p>
<label>Request file <input type="file" name="file" accept="application/json,.json"></label>
<label>or JSON <textarea name="json" rows="6" placeholder='{"depot": {...}, "fleet": {...}, "lead_time_days": 3, "stores": [...]}'></textarea></label>
<label>Time limit (s) <input type="number" name="time_limit_s" value="30" min="1" max="600"></label>
<button type="submit">Build plan</button></form>
<form class="card" data-form="route-job">
<h2>Upload a routing problem</h2>
<p>A routing <code>Problem</code> (depots, vehicles, orders with time windows), solved as a background job.</p>
<label>Problem file <input type="file" name="file" accept="application/json,.json"></label>
<label>or JSON <textarea name="json" rows="6"></textarea></label>
<label>Engine <select name="engine"><option value="auto">auto</option><option value="ortools">OR-Tools</option>
<option value="pyvrp">PyVRP</option></select></label>
<label>Time limit (s) <input type="number" name="time_limit_s" value="30" min="1" max="600"></label>
<button type="submit">Solve</button></form></section>""")
    body = join([forms, tag("h2", "Route jobs"), table(
        ["Job", "Problem", "Orders", "Vehicles", "Status", "Progress", "Best cost", "Created", "By"],
        (_job_row(j) for j in jobs), id="jobs", class_="grid")])
    return page("Routes and replenishment", principal, "routes", body, scripts=("routes.js",))


def _late(order: Order | None, stop: Stop) -> bool:
    """Served outside every time window of its order (after the last one it could make)."""
    if order is None or not order.time_windows:
        return False
    return not any(w.start - 1e-6 <= stop.start <= w.end + 1e-6 for w in order.time_windows)


def _hhmm(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}"


def plan_data(problem: Problem, plan: Plan, tile_url: str | None) -> dict[str, Any]:
    """What the map and the timeline draw (compact: one array per stop)."""
    orders = {o.id: o for o in problem.orders}
    has_coords = problem.travel.kind != "matrix"

    def point(order_or_depot: Any) -> list[float] | None:
        loc = order_or_depot.location
        if loc.lat is not None and loc.lon is not None:
            return [loc.lon, loc.lat]
        if loc.x is not None and loc.y is not None:
            return [loc.x, loc.y]
        return None

    routes = []
    for r in plan.routes:
        stops = []
        for s in r.stops:
            o = orders.get(s.order_id) if s.order_id else None
            stops.append({"k": s.kind, "id": s.order_id, "a": s.arrival, "w": s.wait, "s": s.start, "d": s.departure,
                          "late": _late(o, s), "tw": [[w.start, w.end] for w in o.time_windows] if o else [],
                          "p": point(o) if o else None, "load": list(s.load)})
        routes.append({"vehicle": r.vehicle_id, "stops": stops})
    return {
        "geo": problem.travel.kind == "haversine", "coords": has_coords, "tile_url": tile_url,
        "depots": [{"id": d.id, "p": point(d)} for d in problem.depots],
        "vehicles": {v.id: {"depot": v.start_depot, "end": v.end_depot} for v in problem.vehicles},
        "routes": routes,
        "unserved": [{"id": u.order_id, "p": point(orders[u.order_id]) if u.order_id in orders else None}
                     for u in plan.unserved],
    }


def plan_view(engine: Engine, settings: CloudSettings, job_id: str) -> dict[str, Any]:
    """What a finished job's map and timeline draw, fetched by ``routes.js`` after the page painted."""
    return plan_data(route_jobs.problem(engine, job_id), route_jobs.result(engine, job_id), settings.console_tile_url)


def _summary(problem: Problem, plan: Plan) -> Html:
    capacity = {v.id: v.capacity for v in problem.vehicles}
    orders = {o.id: o for o in problem.orders}
    rows = []
    for r in plan.routes:
        served = [s for s in r.stops if s.kind == "order"]
        late = sum(_late(orders.get(s.order_id or ""), s) for s in served)
        peak = [max((s.load[i] for s in r.stops), default=0.0) for i in range(len(problem.dimensions))]
        cap = capacity.get(r.vehicle_id, ())
        loads = ", ".join(f"{p:,.0f}" + (f" / {cap[i]:,.0f}" if i < len(cap) else "") for i, p in enumerate(peak))
        rows.append([r.vehicle_id, len(served), f"{r.distance:,.1f}", _hhmm(r.duration), f"{r.cost:,.1f}", loads,
                     tag("span", str(late), class_="badge bad") if late else "0"])
    return table(["Vehicle", "Stops", "Distance", "Duration", "Cost", f"Peak load ({', '.join(problem.dimensions)})",
                  "Late stops"], rows, id="loads", class_="grid")


def job_page(engine: Engine, settings: CloudSettings, principal: Principal, job_id: str) -> HTMLResponse:
    info = route_jobs.get(engine, job_id)
    problem = route_jobs.problem(engine, job_id)
    status = Html(f"""<p class="job" data-job="{esc(job_id)}" data-status="{esc(info.status)}">
Status <span class="badge job-{esc(info.status)}" id="job-status">{esc(info.status)}</span>
· progress <progress id="job-progress" max="1" value="{info.progress:.3f}"></progress>
<span id="job-progress-text">{info.progress:.0%}</span> · best cost <span id="job-cost">{
        '-' if info.best_cost is None else f'{info.best_cost:,.1f}'}</span>
· {len(problem.orders):,} orders, {len(problem.vehicles)} vehicles, engine {esc(info.engine)}, limit {info.time_limit_s:g} s
{'' if info.error is None else f'<br><span class="error">{esc(info.error)}</span>'}</p>""")
    cancel = (tag("button", "Cancel job", type="button", data_action="cancel-job", data_job=job_id)
              if info.status in _ACTIVE and can(principal, "plan_routes") else "")
    parts: list[Any] = [status, cancel]
    data = None
    if info.status == "done":
        try:
            plan = route_jobs.result(engine, job_id)
        except Conflict:  # finished between the two reads: shown on the next load
            plan = None
        if plan is not None:
            base = f"/console/routes/{job_id}"
            coords = problem.travel.kind != "matrix"
            # The map's and timeline's geometry (every stop) comes after the first paint (plan_view).
            data = {"view": f"{base}/view.json"}
            downloads = [link(f"{base}/plan.json", "plan JSON", download=f"{job_id}.json")]
            if coords:
                downloads += [link(f"{base}/plan.geojson", "GeoJSON", download=f"{job_id}.geojson"),
                              link(f"{base}/plot.png", "PNG (server plot)", download=f"{job_id}.png"),
                              tag("button", "PNG of this map", type="button", data_action="map-png",
                                  class_="link")]
            parts += [
                tag("p", [(f"{plan.status}: {plan.vehicles_used} vehicles, {plan.total_distance:,.1f} km, total cost "
                          f"{plan.total_cost:,.1f}, {len(plan.unserved)} unserved · download: "),
                          Html(" · ".join(downloads))], class_="summary"),
                Html('<div class="map-wrap"><canvas id="route-map" width="960" height="560" '
                     'aria-label="route map"></canvas></div>') if coords else tag(
                    "p", "Matrix travel: the problem has no coordinates to draw."),
                tag("h2", "Timeline per vehicle"),
                Html('<p class="legend"><span class="lg travel"></span>travel <span class="lg wait"></span>wait '
                     '<span class="lg service"></span>service <span class="lg break"></span>break '
                     '<span class="lg tw"></span>time window <span class="lg late"></span>late stop</p>'
                     '<div id="timeline"></div>'),
                tag("h2", "Loads"), _summary(problem, plan),
                tag("h2", f"Unserved orders ({len(plan.unserved)})"),
                table(["Order", "Reason", "What it means"],
                      [[u.order_id, u.reason, REASONS.get(u.reason, "")] for u in plan.unserved],
                      id="unserved", class_="grid"),
            ]
    return page(f"Route job {job_id}", principal, "routes", join(parts), scripts=("routes.js",), data=data)
