"""Turn engine output (visit sequences) into timed, costed routes and a Plan.

Both engines hand back only *which* orders each vehicle visits in which order and, for
breaks, in which gap between stops each break is taken. The times are then computed here
with one earliest-start forward pass, so every engine is reported the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cloud.routing.compiled import Compiled, CVehicle
from cloud.routing.plan import Plan, PlanStatus, Route, Stop, Unserved


@dataclass(frozen=True)
class RouteSolution:
    vehicle: int
    orders: tuple[int, ...]
    break_gaps: tuple[int, ...] = field(default=())  # per vehicle break: gap 0..len(orders)


@dataclass
class _Clock:
    t: int
    stops: list[Stop]


def _service_start(arrival: int, windows: tuple[tuple[int, int], ...]) -> int:
    for start, end in windows:
        if arrival <= end:
            return max(arrival, start)
    return arrival  # too late for every window: reported as is, the checker rejects it


def _gap(c: Compiled, veh: CVehicle, clock: _Clock, travel: int, breaks: list[int], load: tuple) -> int:
    """Take the gap's breaks as early as allowed, travelling in between; return the arrival."""
    remaining = travel
    for b in breaks:
        earliest, _latest, duration = veh.breaks[b]
        start = max(clock.t, earliest)
        remaining -= min(remaining, start - clock.t)
        s = c.matrix.to_seconds
        clock.stops.append(
            Stop(kind="break", arrival=s(start), start=s(start), departure=s(start + duration), load=load)
        )
        clock.t = start + duration
    return clock.t + remaining


def _loads(c: Compiled, orders: tuple[int, ...]) -> list[tuple[int, ...]]:
    dims = len(c.demand_scale)
    load = [0] * dims
    for i in orders:
        if c.orders[i].role == "delivery":
            load = [a + b for a, b in zip(load, c.orders[i].demand)]
    out = [tuple(load)]
    for i in orders:
        sign = 1 if c.orders[i].role == "pickup" else -1
        load = [a + sign * b for a, b in zip(load, c.orders[i].demand)]
        out.append(tuple(load))
    return out


def _walk(c: Compiled, rs: RouteSolution, depart: int) -> tuple[list[Stop], int, int]:
    veh = c.vehicles[rs.vehicle]
    m = c.matrix
    s = m.to_seconds
    loads = [c.to_load(x) for x in _loads(c, rs.orders)]
    by_gap: dict[int, list[int]] = {}
    for b, g in enumerate(rs.break_gaps):
        by_gap.setdefault(g, []).append(b)
    clock = _Clock(
        depart, [Stop(kind="start", arrival=s(depart), start=s(depart), departure=s(depart), load=loads[0])]
    )
    prev, dist = veh.start, 0
    for k, i in enumerate(rs.orders):
        o = c.orders[i]
        arrival = _gap(c, veh, clock, int(m.duration[prev, o.node]), by_gap.get(k, []), loads[k])
        start = _service_start(arrival, o.windows)
        leg = int(m.distance[prev, o.node])
        dist += leg
        clock.stops.append(
            Stop(
                kind="order",
                order_id=c.problem.orders[i].id,
                arrival=s(arrival),
                wait=s(start - arrival),
                start=s(start),
                departure=s(start + o.service),
                load=loads[k + 1],
                distance_from_previous=m.to_units(leg),
            )
        )
        clock.t, prev = start + o.service, o.node
    last = len(rs.orders)
    if veh.end is not None:
        arrival = _gap(c, veh, clock, int(m.duration[prev, veh.end]), by_gap.get(last, []), loads[-1])
        leg = int(m.distance[prev, veh.end])
        dist += leg
        clock.stops.append(
            Stop(
                kind="end",
                arrival=s(arrival),
                start=s(arrival),
                departure=s(arrival),
                load=loads[-1],
                distance_from_previous=m.to_units(leg),
            )
        )
        clock.t = arrival
    else:
        clock.t = _gap(c, veh, clock, 0, by_gap.get(last, []), loads[-1])
    return clock.stops, clock.t, dist


def _departure_delay(c: Compiled, rs: RouteSolution, stops: list[Stop]) -> int:
    """Ticks the vehicle can leave later without ending later or missing a window.

    Leaving later by D shifts stop k by max(0, D - waits up to k): it must stay inside the
    window used, and D beyond the total waiting would only push the end. With breaks, only the
    wait at the first stop is absorbed (later stops are then unchanged).
    """
    tick = c.matrix.to_ticks
    visits = [s for s in stops if s.kind == "order"]
    if not visits:
        return 0
    if rs.break_gaps:
        return 0 if 0 in rs.break_gaps else tick(visits[0].wait)
    waited, delay = 0, None
    for i, stop in zip(rs.orders, visits, strict=True):
        waited += tick(stop.wait)
        start = tick(stop.start)
        window_end = next((hi for lo, hi in c.orders[i].windows if lo <= start <= hi), None)
        if window_end is not None:
            slack = waited + window_end - start
            delay = slack if delay is None else min(delay, slack)
    return min(waited, delay) if delay is not None else waited


def build_route(c: Compiled, rs: RouteSolution) -> Route:
    veh = c.vehicles[rs.vehicle]
    stops, end, dist = _walk(c, rs, veh.shift[0])
    delay = _departure_delay(c, rs, stops)
    if delay > 0:
        stops, end, dist = _walk(c, rs, veh.shift[0] + delay)
    spec = c.problem.vehicles[rs.vehicle]
    duration = c.matrix.to_seconds(end) - stops[0].departure
    km = c.matrix.to_units(dist)
    cost = spec.fixed_cost + spec.cost_per_km * km + spec.cost_per_hour * duration / 3600
    return Route(vehicle_id=spec.id, stops=tuple(stops), distance=km, duration=duration, cost=cost)


def build_plan(
    c: Compiled,
    routes: list[RouteSolution],
    unserved: list[Unserved],
    *,
    engine: str,
    solve_time_s: float,
    time_limit_s: float,
    seed: int,
    no_solution: bool = False,
) -> Plan:
    built = [build_route(c, r) for r in sorted(routes, key=lambda r: r.vehicle) if r.orders]
    index = c.problem.order_index()
    penalty = sum(c.problem.orders[index[u.order_id]].penalty or 0.0 for u in unserved)
    missing_required = any(c.orders[index[u.order_id]].required for u in unserved)
    status: PlanStatus = "no_solution" if no_solution else ("partial" if missing_required else "feasible")
    route_cost = sum(r.cost for r in built)
    return Plan(
        problem=c.problem.name,
        status=status,
        engine=engine,
        routes=tuple(built),
        unserved=tuple(sorted(unserved, key=lambda u: index[u.order_id])),
        total_distance=sum(r.distance for r in built),
        total_duration=sum(r.duration for r in built),
        route_cost=route_cost,
        penalty_cost=penalty,
        total_cost=route_cost + penalty,
        vehicles_used=len(built),
        solve_time_s=solve_time_s,
        time_limit_s=time_limit_s,
        seed=seed,
    )
