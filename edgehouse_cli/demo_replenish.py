"""The demo's last act: a replenishment plan from the synced forecasts and stock, routed, printed, plotted.

It asks the cloud as a planner would (``POST /api/v1/replenishment-plan``, no ``on_hand``: the
stock the gateways synced is used) for every site of the fleet, delivered from one depot by a few
vans, prints the routes (vehicle, stops, distance) and the unserved orders with their reasons, the
line ``replenishment: orders=<n> routes=<n> distance_km=<x> unserved=<n>``, and writes the route
plot (``cloud.routing.plot``, needs matplotlib) next to the demo's other files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
from rich.console import Console
from rich.table import Table

from cloud.routing.plan import Plan
from cloud.routing.plot import plot_png
from cloud.routing.problem import Problem

#: Where the demo's depot and sites are (the fleet file has no coordinates): northern Germany.
DEPOT: Final = {"lat": 53.55, "lon": 10.00}
SITE_LOCATIONS: Final = ({"lat": 54.32, "lon": 10.13}, {"lat": 52.37, "lon": 9.73}, {"lat": 53.08, "lon": 8.80},
                         {"lat": 53.87, "lon": 10.69})
LEAD_TIME_DAYS: Final = 7
#: Units a van carries (a store's delivery is one order: the north site needs about 120,000 units a week).
VAN_CAPACITY_UNITS: Final = 200_000
HOUR: Final = 3600.0


@dataclass(frozen=True, slots=True)
class Replenishment:
    orders: int
    routes: int
    distance_km: float
    unserved: int
    lines: int
    synced_lines: int
    plot: Path | None

    @property
    def line(self) -> str:
        return (f"replenishment: orders={self.orders} routes={self.routes} distance_km={self.distance_km:.1f} "
                f"unserved={self.unserved}")


def request(sites: list[str]) -> dict[str, Any]:
    stores = [{"site": site, "location": SITE_LOCATIONS[i % len(SITE_LOCATIONS)], "service_time": 900,
               "time_windows": [{"start": 6 * HOUR, "end": 20 * HOUR}]} for i, site in enumerate(sites)]
    return {"depot": {"id": "depot", "location": DEPOT, "time_window": {"start": 5 * HOUR, "end": 22 * HOUR}},
            "fleet": {"count": 2, "capacity": [VAN_CAPACITY_UNITS]}, "lead_time_days": LEAD_TIME_DAYS, "stores": stores,
            "time_limit_s": 5.0, "engine": "auto", "seed": 1}


def plan_and_report(console: Console, cloud_url: str, token: str, sites: list[str], plot_path: Path) -> Replenishment:
    """Ask for the plan, print its routes and summary line, write the plot; raises httpx errors."""
    with httpx.Client(base_url=cloud_url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        resp = client.post("/api/v1/replenishment-plan", json=request(sites))
    resp.raise_for_status()
    body = resp.json()
    problem, plan = Problem.model_validate(body["problem"]), Plan.model_validate(body["plan"])
    lines = [ln for store in body["stores"] for ln in store["lines"]]
    table = Table(title=f"replenishment routes (lead time {LEAD_TIME_DAYS} days, from synced forecasts and stock)")
    for col in ("vehicle", "stops", "distance km", "duration h"):
        table.add_column(col, justify="right")
    for route in plan.routes:
        stops = " → ".join(s.order_id or s.kind for s in route.stops)
        table.add_row(route.vehicle_id, stops, f"{route.distance:.1f}", f"{route.duration / HOUR:.1f}")
    for u in plan.unserved:
        table.add_row("[red]unserved[/]", u.order_id, "", u.reason)
    console.print(table)
    for store in body["stores"]:
        ordered = sum(ln["order_qty"] for ln in store["lines"])
        console.print(f"  {store['site']}: {len(store['lines'])} SKUs planned, {ordered:,} units to deliver, "
                      f"{len(store['missing'])} left out" + (f" ({store['missing'][0]['reason']}, …)"
                                                              if store["missing"] else ""))
    plot = plot_path if plot_png(problem, plan, plot_path) else None
    result = Replenishment(orders=len(problem.orders), routes=len(plan.routes), distance_km=plan.total_distance,
                           unserved=len(plan.unserved), lines=len(lines),
                           synced_lines=sum(1 for ln in lines if ln["on_hand_source"] == "synced"), plot=plot)
    console.print(result.line)
    console.print(f"route plot: {plot}" if plot else "route plot: not written (matplotlib is not installed)")
    return result
