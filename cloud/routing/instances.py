"""Read VRPLIB benchmark files (Solomon / Gehring-Homberger VRPTW, CVRPLIB X) into a Problem.

Solomon and GH use the DIMACS convention (distances and times truncated to one decimal);
CVRPLIB uses TSPLIB nint rounding. Travel time equals distance (speed 1).
"""

from __future__ import annotations

import math
from pathlib import Path

from cloud.routing.problem import (
    Depot,
    EuclideanTravel,
    Location,
    Order,
    Problem,
    TimeWindow,
    Vehicle,
)


def _sections(text: str) -> tuple[dict[str, str], dict[str, list[list[str]]]]:
    header: dict[str, str] = {}
    sections: dict[str, list[list[str]]] = {}
    current: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line == "EOF":
            continue
        if line.endswith("SECTION"):
            current = line
            sections[current] = []
        elif current is None and ":" in line:
            key, _, value = line.partition(":")
            header[key.strip()] = value.strip()
        elif current is not None:
            sections[current].append(line.split())
    return header, sections


def read_vrplib(path: str | Path, fleet: int | None = None, decimals: int | None = None) -> Problem:
    """Parse a VRPLIB file; ``fleet`` overrides the VEHICLES header (required for CVRP)."""
    path = Path(path)
    header, sec = _sections(path.read_text())
    coords = {int(r[0]): (float(r[1]), float(r[2])) for r in sec["NODE_COORD_SECTION"]}
    demand = {int(r[0]): float(r[1]) for r in sec.get("DEMAND_SECTION", [])}
    windows = {int(r[0]): (float(r[1]), float(r[2])) for r in sec.get("TIME_WINDOW_SECTION", [])}
    service = {int(r[0]): float(r[1]) for r in sec.get("SERVICE_TIME_SECTION", [])}
    depot_ids = [int(r[0]) for r in sec["DEPOT_SECTION"] if int(r[0]) > 0]
    capacity = float(header["CAPACITY"])
    is_tw = "TIME_WINDOW_SECTION" in sec
    customers = [n for n in sorted(coords) if n not in depot_ids]
    if fleet is None:
        if "VEHICLES" in header:
            fleet = int(header["VEHICLES"])
        else:
            total = sum(demand[n] for n in customers)
            fleet = math.ceil(1.15 * total / capacity) + 2
    depot = depot_ids[0]
    horizon = windows.get(depot, (0.0, 1e9))
    shift = TimeWindow(start=horizon[0], end=horizon[1])
    vehicles = tuple(
        Vehicle(id=f"v{k + 1}", start_depot="depot", end_depot="depot", capacity=(capacity,), shift=shift)
        for k in range(fleet)
    )
    orders = tuple(
        Order(
            id=str(n - 1),
            location=Location(x=coords[n][0], y=coords[n][1]),
            demand=(demand.get(n, 0.0),),
            time_windows=(TimeWindow(start=windows[n][0], end=windows[n][1]),) if n in windows else (),
            service_time=service.get(n, 0.0),
        )
        for n in customers
    )
    travel = (
        EuclideanTravel(decimals=1 if decimals is None else decimals, rounding="trunc")
        if is_tw
        else EuclideanTravel(decimals=0 if decimals is None else decimals, rounding="round")
    )
    return Problem(
        name=header.get("NAME", path.stem),
        dimensions=("demand",),
        depots=(Depot(id="depot", location=Location(x=coords[depot][0], y=coords[depot][1])),),
        vehicles=vehicles,
        orders=orders,
        travel=travel,
    )


def read_solution(path: str | Path) -> list[list[str]]:
    """Routes of a ``.sol`` file as lists of order ids (customer numbers, depot excluded)."""
    routes = []
    for line in Path(path).read_text().splitlines():
        if line.startswith("Route"):
            routes.append(line.partition(":")[2].split())
    return routes
