"""PyVRP engine (iterated local search) for the problems it models.

Supported: capacities in several dimensions, one time window per order, shifts, fixed and
per-distance/per-duration costs, route duration/distance limits, open routes, optional
orders with a penalty, several depots. Not supported (use OR-Tools): breaks, skills,
pickup-delivery pairs, several time windows per order.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pyvrp

from cloud.routing.compiled import Compiled
from cloud.routing.engine import EngineResult, Progress
from cloud.routing.schedule import RouteSolution

COST_SCALE = 10_000  # integer cost units per currency unit, before dividing by the common gcd
INF = 2**53


def unsupported_reason(c: Compiled) -> str | None:
    if any(v.breaks for v in c.vehicles):
        return "breaks"
    if any(o.skills for o in c.orders):
        return "skills"
    if any(o.role != "delivery" for o in c.orders):
        return "pickup-delivery pairs"
    if any(len(o.windows) > 1 for o in c.orders):
        return "several time windows per order"
    return None


@dataclass
class _Stop:
    """PyVRP stopping criterion: deadline, optional iteration cap, progress and give-up rule."""

    deadline: float
    t0: float
    budget: float
    max_iterations: int | None
    give_up_fraction: float | None
    progress: Progress | None
    cost_unit: float
    iterations: int = 0
    last_best: float | None = None
    gave_up: bool = False

    def __call__(self, best_cost: float) -> bool:
        now = time.perf_counter()
        feasible = best_cost < INF
        frac = min(1.0, (now - self.t0) / self.budget)
        if feasible and best_cost != self.last_best and self.progress is not None:
            self.progress(best_cost * self.cost_unit, frac)
        if feasible:
            self.last_best = best_cost
        self.iterations += 1
        if self.max_iterations is not None and self.iterations > self.max_iterations:
            return True
        if not feasible and self.give_up_fraction is not None and frac >= self.give_up_fraction:
            self.gave_up = True
            return True
        return now >= self.deadline


def _types(c: Compiled, depot_of: dict[int, int], open_end: int | None) -> tuple[list, list[list[int]], int]:
    specs = c.problem.vehicles
    dpu, tps = c.matrix.dist_per_unit, c.matrix.ticks_per_second
    raw = []
    for v, veh in enumerate(c.vehicles):
        spec = specs[v]
        dist_cost = int(round(spec.cost_per_km * COST_SCALE / dpu))
        dur_cost = int(round(spec.cost_per_hour * COST_SCALE / 3600 / tps))
        raw.append((v, veh, dist_cost, dur_cost, int(round(spec.fixed_cost * COST_SCALE))))
    unit = 0
    for _, _, a, b, f in raw:
        unit = math.gcd(unit, math.gcd(a, math.gcd(b, f)))
    unit = max(unit, 1)
    groups: dict[tuple, list[int]] = {}
    for v, veh, a, b, f in raw:
        end = depot_of[veh.end] if veh.end is not None else open_end
        key = (
            tuple(veh.capacity),
            depot_of[veh.start],
            end,
            f // unit,
            veh.shift,
            veh.max_duration if veh.max_duration is not None else INF,
            veh.max_distance if veh.max_distance is not None else INF,
            a // unit,
            b // unit,
        )
        groups.setdefault(key, []).append(v)
    types, members = [], []
    for key, vs in groups.items():
        cap, start, end, fixed, shift, max_dur, max_dist, dcost, tcost = key
        types.append(
            pyvrp.VehicleType(
                num_available=len(vs),
                capacity=list(cap) if cap else [],
                start_depot=start,
                end_depot=end,
                fixed_cost=fixed,
                tw_early=shift[0],
                tw_late=shift[1],
                shift_duration=max_dur,
                max_distance=max_dist,
                unit_distance_cost=dcost,
                unit_duration_cost=tcost,
            )
        )
        members.append(vs)
    return types, members, unit


def _data(c: Compiled) -> tuple[pyvrp.ProblemData, list[list[int]], list[int], float]:
    m = c.matrix
    depot_nodes = sorted({v.start for v in c.vehicles} | {v.end for v in c.vehicles if v.end is not None})
    open_route = any(v.end is None for v in c.vehicles)
    nodes = depot_nodes + [o.node for o in c.orders]
    dist = m.distance[np.ix_(nodes, nodes)]
    dur = m.duration[np.ix_(nodes, nodes)]
    open_end = None
    if open_route:  # a free end depot: zero distance and time to it
        open_end = len(depot_nodes)
        n = len(nodes)
        dist = np.insert(np.insert(dist, open_end, 0, axis=0), open_end, 0, axis=1)
        dur = np.insert(np.insert(dur, open_end, 0, axis=0), open_end, 0, axis=1)
        dist[open_end, :] = INF // 4
        dur[open_end, :] = INF // 4
        dist[:, open_end] = 0
        dur[:, open_end] = 0
        dist[open_end, open_end] = 0
        dur[open_end, open_end] = 0
        del n
    n_depots = len(depot_nodes) + (1 if open_route else 0)
    depot_of = {node: k for k, node in enumerate(depot_nodes)}
    types, members, unit = _types(c, depot_of, open_end)
    locations = [pyvrp.Location(0, 0) for _ in range(n_depots + len(c.orders))]
    depots = [pyvrp.Depot(location=k) for k in range(n_depots)]
    dims = len(c.demand_scale)
    capped = any(v.capacity for v in c.vehicles)
    clients = []
    for k, o in enumerate(c.orders):
        window = o.windows[0] if o.windows else (0, INF)
        clients.append(
            pyvrp.Client(
                location=n_depots + k,
                delivery=list(o.demand) if capped else [0] * dims,
                service_duration=o.service,
                tw_early=window[0],
                tw_late=window[1],
                prize=0 if o.required else max(1, int(round(o.penalty_cost * COST_SCALE / unit))),
                required=o.required,
            )
        )
    if not capped:
        types = [_uncapped(t, dims) for t in types]
    data = pyvrp.ProblemData(
        locations, clients, depots, types, [np.ascontiguousarray(dist)], [np.ascontiguousarray(dur)]
    )
    return data, members, list(range(n_depots)), unit / COST_SCALE


def _uncapped(t: pyvrp.VehicleType, dims: int) -> pyvrp.VehicleType:
    return t.replace(capacity=[INF] * dims)


def solve_pyvrp(
    c: Compiled,
    time_limit_s: float,
    *,
    seed: int = 0,
    progress: Progress | None = None,
    max_iterations: int | None = None,
    give_up_fraction: float | None = None,
) -> EngineResult:
    t0 = time.perf_counter()
    reason = unsupported_reason(c)
    if reason is not None:
        raise ValueError(f"the pyvrp engine does not support {reason}")
    data, members, depots, cost_unit = _data(c)
    stop = _Stop(t0 + time_limit_s, t0, time_limit_s, max_iterations, give_up_fraction, progress, cost_unit)
    result = pyvrp.solve(data, stop=stop, seed=seed, collect_stats=False, display=False)
    elapsed = time.perf_counter() - t0
    best = result.best
    if not best.is_feasible():
        return EngineResult("pyvrp", False, (), tuple(range(len(c.orders))), elapsed)
    n_depots = len(depots)
    free = [list(vs) for vs in members]
    routes: list[RouteSolution] = []
    served: set[int] = set()
    for route in best.routes():
        vehicle = free[route.vehicle_type()].pop(0)
        seq = tuple(int(a.idx) for a in route if a.is_client())
        served.update(seq)
        routes.append(RouteSolution(vehicle, seq))
    dropped = tuple(i for i in range(len(c.orders)) if i not in served)
    return EngineResult("pyvrp", True, tuple(routes), dropped, elapsed)
