"""GeoJSON export and a PNG plot of the routes (matplotlib is optional)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cloud.routing.plan import Plan
from cloud.routing.problem import Location, Problem


def _xy(loc: Location) -> tuple[float, float]:
    if loc.lon is not None and loc.lat is not None:
        return (loc.lon, loc.lat)
    if loc.x is not None and loc.y is not None:
        return (loc.x, loc.y)
    raise ValueError("location has no coordinates (matrix travel): nothing to draw")


def _route_points(problem: Problem, plan: Plan) -> list[tuple[str, list[tuple[float, float]]]]:
    orders = {o.id: o.location for o in problem.orders}
    depots = {d.id: d.location for d in problem.depots}
    vehicles = {v.id: v for v in problem.vehicles}
    out = []
    for route in plan.routes:
        veh = vehicles[route.vehicle_id]
        points = []
        for stop in route.stops:
            if stop.kind == "order":
                points.append(_xy(orders[stop.order_id or ""]))
            elif stop.kind == "start":
                points.append(_xy(depots[veh.start_depot]))
            elif stop.kind == "end" and veh.end_depot is not None:
                points.append(_xy(depots[veh.end_depot]))
        out.append((route.vehicle_id, points))
    return out


def has_coordinates(problem: Problem) -> bool:
    return problem.travel.kind != "matrix"


def to_geojson(problem: Problem, plan: Plan) -> dict[str, Any]:
    """One LineString per route and one Point per unserved order ([lon, lat] or [x, y])."""
    features: list[dict[str, Any]] = []
    for (vehicle_id, points), route in zip(_route_points(problem, plan), plan.routes):
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": [list(p) for p in points]},
                "properties": {"vehicle_id": vehicle_id, "distance": route.distance, "cost": route.cost},
            }
        )
    orders = {o.id: o.location for o in problem.orders}
    for u in plan.unserved:
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": list(_xy(orders[u.order_id]))},
                "properties": {"order_id": u.order_id, "unserved": u.reason},
            }
        )
    return {"type": "FeatureCollection", "features": features}


def plot_png(problem: Problem, plan: Plan, path: Path) -> bool:
    """Draw the routes; returns False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 8))
    for vehicle_id, points in _route_points(problem, plan):
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1, label=vehicle_id)
    depots = [_xy(d.location) for d in problem.depots]
    ax.scatter([p[0] for p in depots], [p[1] for p in depots], marker="s", s=80, color="black", zorder=3)
    orders = {o.id: o.location for o in problem.orders}
    missing = [_xy(orders[u.order_id]) for u in plan.unserved]
    if missing:
        ax.scatter([p[0] for p in missing], [p[1] for p in missing], marker="x", color="red", zorder=3)
    ax.set_title(f"{plan.problem}: {plan.vehicles_used} vehicles, distance {plan.total_distance:.1f}")
    if len(plan.routes) <= 20:
        ax.legend(fontsize="small", loc="best")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return True
