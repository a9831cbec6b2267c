"""Independent plan checker: verifies every constraint of a returned plan against the problem.

It shares only the problem model and the travel matrix with the engines (never their
search code) and recomputes everything from the plan's stated stops: travel, waiting, time
windows, shifts, breaks, loads, capacities, skills, pickup-delivery, route limits, totals.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cloud.routing.plan import Plan, Route, Stop
from cloud.routing.problem import Problem, Vehicle
from cloud.routing.travel import TravelMatrix, build_matrix

EPS = 1e-6


@dataclass
class CheckReport:
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def add(self, message: str) -> None:
        self.violations.append(message)


def _close(a: float, b: float, tol: float = EPS) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


class _RouteChecker:
    def __init__(self, problem: Problem, m: TravelMatrix, report: CheckReport) -> None:
        self.p, self.m, self.r = problem, m, report
        self.index = problem.order_index()
        self.depots = problem.depot_index()

    def node(self, stop: Stop, vehicle: Vehicle) -> int:
        if stop.kind == "order":
            return self.m.order_node(self.index[stop.order_id or ""])
        depot = vehicle.start_depot if stop.kind == "start" else vehicle.end_depot
        return self.depots[depot or ""]

    def check(self, route: Route, vehicle: Vehicle) -> None:
        where = f"route {route.vehicle_id}"
        stops = route.stops
        if not stops or stops[0].kind != "start":
            self.r.add(f"{where}: does not begin with a start stop")
            return
        if vehicle.end_depot is not None and stops[-1].kind != "end":
            self.r.add(f"{where}: does not end at its end depot")
            return
        if vehicle.end_depot is None and any(s.kind == "end" for s in stops):
            self.r.add(f"{where}: open route has an end stop")
            return
        self._times(route, vehicle, where)
        self._breaks(route, vehicle, where)
        self._loads(route, vehicle, where)
        self._skills(route, vehicle, where)
        self._limits(route, vehicle, where)

    def _times(self, route: Route, vehicle: Vehicle, where: str) -> None:
        stops = route.stops
        s = self.m.to_seconds
        if stops[0].departure < vehicle.shift.start - EPS:
            self.r.add(f"{where}: leaves at {stops[0].departure:g} before the shift starts")
        prev, prev_node, gap_breaks = stops[0], self.node(stops[0], vehicle), []
        distance = 0.0
        for stop in stops[1:]:
            if stop.kind == "break":
                gap_breaks.append(stop)
                continue
            node = self.node(stop, vehicle)
            travel = s(int(self.m.duration[prev_node, node]))
            leg = self.m.to_units(int(self.m.distance[prev_node, node]))
            label = f"{where} stop {stop.order_id or stop.kind}"
            if not _close(stop.distance_from_previous, leg):
                self.r.add(f"{label}: distance_from_previous {stop.distance_from_previous:g} != {leg:g}")
            distance += leg
            busy = sum(b.departure - b.start for b in gap_breaks)
            if stop.arrival < prev.departure + travel + busy - EPS:
                self.r.add(
                    f"{label}: arrives at {stop.arrival:g}, earliest possible {prev.departure + travel + busy:g}"
                )
            t = prev.departure
            for b in gap_breaks:
                if b.start < t - EPS:
                    self.r.add(f"{where}: break at {b.start:g} overlaps the previous activity")
                t = b.departure
            if gap_breaks and t > stop.arrival + EPS:
                self.r.add(f"{label}: break ends at {t:g} after the arrival {stop.arrival:g}")
            if stop.kind == "order":
                self._service(stop, label)
            prev, prev_node, gap_breaks = stop, node, []
        for b in gap_breaks:  # breaks after the last stop of an open route
            if b.start < prev.departure - EPS:
                self.r.add(f"{where}: break at {b.start:g} overlaps the previous activity")
            prev = b
        end = stops[-1].departure
        if end > vehicle.shift.end + EPS:
            self.r.add(f"{where}: ends at {end:g} after the shift end {vehicle.shift.end:g}")
        if not _close(route.distance, distance):
            self.r.add(f"{where}: distance {route.distance:g} != sum of legs {distance:g}")
        if not _close(route.duration, end - stops[0].departure):
            self.r.add(f"{where}: duration {route.duration:g} != {end - stops[0].departure:g}")
        cost = (
            vehicle.fixed_cost
            + vehicle.cost_per_km * distance
            + vehicle.cost_per_hour * route.duration / 3600
        )
        if not _close(route.cost, cost):
            self.r.add(f"{where}: cost {route.cost:g} != {cost:g}")

    def _service(self, stop: Stop, label: str) -> None:
        order = self.p.orders[self.index[stop.order_id or ""]]
        if stop.start < stop.arrival - EPS or not _close(stop.wait, stop.start - stop.arrival):
            self.r.add(
                f"{label}: wait {stop.wait:g} does not match arrival {stop.arrival:g} / start {stop.start:g}"
            )
        if order.time_windows and not any(
            w.start - EPS <= stop.start <= w.end + EPS for w in order.time_windows
        ):
            self.r.add(f"{label}: service starts at {stop.start:g}, outside every time window")
        if not _close(stop.departure, stop.start + order.service_time):
            self.r.add(f"{label}: departure {stop.departure:g} != start + service time")

    def _breaks(self, route: Route, vehicle: Vehicle, where: str) -> None:
        taken = sorted((s for s in route.stops if s.kind == "break"), key=lambda s: s.start)
        wanted = sorted(vehicle.breaks, key=lambda b: b.window.start)
        if len(taken) != len(wanted):
            self.r.add(f"{where}: {len(taken)} breaks taken, {len(wanted)} required")
            return
        for stop, brk in zip(taken, wanted):
            if not brk.window.start - EPS <= stop.start <= brk.window.end + EPS:
                self.r.add(f"{where}: break at {stop.start:g} outside its window")
            if not _close(stop.departure - stop.start, brk.duration):
                self.r.add(f"{where}: break lasts {stop.departure - stop.start:g}, not {brk.duration:g}")

    def _loads(self, route: Route, vehicle: Vehicle, where: str) -> None:
        dims = len(self.p.dimensions)
        pairs = {pd.pickup: 1 for pd in self.p.pickup_deliveries} | {
            pd.delivery: -1 for pd in self.p.pickup_deliveries
        }
        visits = [s.order_id or "" for s in route.stops if s.kind == "order"]
        demand = {oid: self.p.orders[self.index[oid]].demand or (0.0,) * dims for oid in visits}
        load = [sum(demand[o][k] for o in visits if o not in pairs) for k in range(dims)]
        for stop in route.stops:
            if stop.kind == "order":
                sign = pairs.get(stop.order_id or "", -1)
                load = [a + sign * b for a, b in zip(load, demand[stop.order_id or ""])]
            if len(stop.load) != dims or not all(_close(a, b) for a, b in zip(stop.load, load)):
                self.r.add(f"{where} stop {stop.order_id or stop.kind}: load {stop.load} != {tuple(load)}")
            if vehicle.capacity and any(a > q + EPS for a, q in zip(load, vehicle.capacity)):
                self.r.add(f"{where} stop {stop.order_id or stop.kind}: load {tuple(load)} over capacity")
            if any(a < -EPS for a in load):
                self.r.add(f"{where} stop {stop.order_id or stop.kind}: negative load {tuple(load)}")

    def _skills(self, route: Route, vehicle: Vehicle, where: str) -> None:
        for stop in route.stops:
            if stop.kind == "order":
                missing = self.p.orders[self.index[stop.order_id or ""]].skills - vehicle.skills
                if missing:
                    self.r.add(f"{where}: order {stop.order_id} needs skills {sorted(missing)}")

    def _limits(self, route: Route, vehicle: Vehicle, where: str) -> None:
        if vehicle.max_duration is not None and route.duration > vehicle.max_duration + EPS:
            self.r.add(f"{where}: duration {route.duration:g} over max_duration {vehicle.max_duration:g}")
        if vehicle.max_distance is not None and route.distance > vehicle.max_distance + EPS:
            self.r.add(f"{where}: distance {route.distance:g} over max_distance {vehicle.max_distance:g}")


def _coverage(problem: Problem, plan: Plan, report: CheckReport) -> dict[str, tuple[str, int]]:
    """Each order served once or listed unserved, never both; returns order -> (vehicle, position)."""
    where: dict[str, tuple[str, int]] = {}
    index = problem.order_index()
    for route in plan.routes:
        for pos, stop in enumerate(route.stops):
            if stop.kind != "order":
                continue
            if stop.order_id not in index:
                report.add(f"route {route.vehicle_id}: unknown order {stop.order_id!r}")
            elif stop.order_id in where:
                report.add(f"order {stop.order_id}: served more than once")
            else:
                where[stop.order_id] = (route.vehicle_id, pos)
    unserved = [u.order_id for u in plan.unserved]
    for oid in unserved:
        if oid in where:
            report.add(f"order {oid}: both served and listed unserved")
        if oid not in index:
            report.add(f"unserved: unknown order {oid!r}")
    if len(set(unserved)) != len(unserved):
        report.add("unserved: an order is listed twice")
    for order in problem.orders:
        if order.id not in where and order.id not in unserved:
            report.add(f"order {order.id}: neither served nor listed unserved")
    return where


def _pairs(problem: Problem, where: dict[str, tuple[str, int]], report: CheckReport) -> None:
    for pd in problem.pickup_deliveries:
        a, b = where.get(pd.pickup), where.get(pd.delivery)
        if (a is None) != (b is None):
            report.add(f"pair {pd.pickup}->{pd.delivery}: only one half is served")
        elif a is not None and b is not None and (a[0] != b[0] or a[1] > b[1]):
            report.add(f"pair {pd.pickup}->{pd.delivery}: not picked up before delivery on one vehicle")


def _totals(problem: Problem, plan: Plan, report: CheckReport) -> None:
    index = problem.order_index()
    checks = {
        "total_distance": sum(r.distance for r in plan.routes),
        "total_duration": sum(r.duration for r in plan.routes),
        "route_cost": sum(r.cost for r in plan.routes),
        "penalty_cost": sum(
            problem.orders[index[u.order_id]].penalty or 0.0 for u in plan.unserved if u.order_id in index
        ),
        "vehicles_used": len(plan.routes),
    }
    for name, value in checks.items():
        if not _close(float(getattr(plan, name)), float(value)):
            report.add(f"plan.{name}: {getattr(plan, name)} != {value}")
    if not _close(plan.total_cost, plan.route_cost + plan.penalty_cost):
        report.add("plan.total_cost: != route_cost + penalty_cost")
    required_missing = any(
        problem.orders[index[u.order_id]].penalty is None for u in plan.unserved if u.order_id in index
    )
    if plan.status == "feasible" and required_missing:
        report.add("plan.status: 'feasible' although required orders are unserved")


def check_plan(problem: Problem, plan: Plan, matrix: TravelMatrix | None = None) -> CheckReport:
    report = CheckReport()
    m = matrix if matrix is not None else build_matrix(problem)
    vehicles = {v.id: v for v in problem.vehicles}
    seen: set[str] = set()
    checker = _RouteChecker(problem, m, report)
    for route in plan.routes:
        if route.vehicle_id not in vehicles:
            report.add(f"route {route.vehicle_id}: unknown vehicle")
            continue
        if route.vehicle_id in seen:
            report.add(f"route {route.vehicle_id}: vehicle used twice")
        seen.add(route.vehicle_id)
        checker.check(route, vehicles[route.vehicle_id])
    where = _coverage(problem, plan, report)
    _pairs(problem, where, report)
    _totals(problem, plan, report)
    return report
