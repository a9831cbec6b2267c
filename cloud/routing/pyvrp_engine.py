"""PyVRP engine (iterated local search) for the problems it models.

Supported: capacities in several dimensions, time windows (several per order become a
client group of which one is visited), shifts, fixed and per-distance/per-duration costs,
route duration/distance limits, open routes, optional orders with a penalty, several depots.
Not supported (use OR-Tools): breaks, skills, pickup-delivery pairs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np
import pyvrp

from cloud.routing.compiled import Compiled
from cloud.routing.engine import EngineResult, Progress
from cloud.routing.schedule import RouteSolution

COST_SCALE = 10_000  # integer cost units per currency unit, before dividing by the common gcd
INF = 2**53
MAX_PENALTY = 1e9


def unsupported_reason(c: Compiled) -> str | None:
    if any(v.breaks for v in c.vehicles):
        return "breaks"
    if any(o.skills for o in c.orders):
        return "skills"
    if any(o.role != "delivery" for o in c.orders):
        return "pickup-delivery pairs"
    return None


@dataclass
class _Stop:
    """PyVRP stopping criterion: deadline, optional iteration cap, and progress reports."""

    deadline: float
    t0: float
    budget: float
    max_iterations: int | None
    progress: Progress | None
    cost_unit: float
    iterations: int = 0
    last_best: float | None = None

    def __call__(self, best_cost: float) -> bool:
        now = time.perf_counter()
        feasible = best_cost < INF
        frac = min(1.0, (now - self.t0) / self.budget)
        improved = feasible and best_cost != self.last_best
        if self.progress is not None and (improved or self.iterations % 64 == 0):
            self.progress(best_cost * self.cost_unit if feasible else None, frac)
        if feasible:
            self.last_best = best_cost
        self.iterations += 1
        if self.max_iterations is not None and self.iterations > self.max_iterations:
            return True
        return now >= self.deadline


def _types(c: Compiled, depot_of: dict[int, int], open_end: int | None) -> tuple[list, list[list[int]], int]:
    specs = c.problem.vehicles
    dpu, tps = c.matrix.dist_per_unit, c.matrix.ticks_per_second
    raw = []
    for v, veh in enumerate(c.vehicles):
        spec = specs[v]
        dist_cost = round(spec.cost_per_km * COST_SCALE / dpu)
        dur_cost = round(spec.cost_per_hour * COST_SCALE / 3600 / tps)
        raw.append((v, veh, dist_cost, dur_cost, round(spec.fixed_cost * COST_SCALE)))
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


@dataclass(frozen=True)
class _Data:
    data: pyvrp.ProblemData
    members: list[list[int]]  # per vehicle type: our vehicle indices
    client_order: list[int]  # per PyVRP client: our order index
    cost_unit: float  # currency per PyVRP cost unit


def _matrices(c: Compiled, depot_nodes: list[int], open_route: bool) -> tuple[np.ndarray, np.ndarray]:
    """Depots, then one location per order; an open-route end depot is reached at no cost."""
    nodes = depot_nodes + [o.node for o in c.orders]
    dist = c.matrix.distance[np.ix_(nodes, nodes)]
    dur = c.matrix.duration[np.ix_(nodes, nodes)]
    if open_route:
        end = len(depot_nodes)
        dist = np.insert(np.insert(dist, end, INF // 4, axis=0), end, 0, axis=1)
        dur = np.insert(np.insert(dur, end, INF // 4, axis=0), end, 0, axis=1)
        dist[end, end] = dur[end, end] = 0
    return np.ascontiguousarray(dist), np.ascontiguousarray(dur)


def _clients(c: Compiled, n_depots: int, unit: int) -> tuple[list, list, list[int]]:
    """One client per order window; an order with several windows becomes a group (visit one)."""
    dims = len(c.demand_scale)
    capped = any(v.capacity for v in c.vehicles)
    clients, groups, client_order = [], [], []
    for k, o in enumerate(c.orders):
        windows = o.windows or ((0, INF),)
        group = len(groups) if len(windows) > 1 else None
        prize = 0 if o.required else max(1, round(o.penalty_cost * COST_SCALE / unit))
        for early, late in windows:
            clients.append(
                pyvrp.Client(
                    location=n_depots + k,
                    delivery=list(o.demand) if capped else [0] * dims,
                    service_duration=o.service,
                    tw_early=early,
                    tw_late=late,
                    prize=prize,
                    required=o.required and group is None,
                    group=group,
                )
            )
            client_order.append(k)
        if group is not None:
            members = list(range(len(clients) - len(windows), len(clients)))
            groups.append(pyvrp.ClientGroup(members, required=o.required))
    return clients, groups, client_order


def _data(c: Compiled) -> _Data:
    depot_nodes = sorted({v.start for v in c.vehicles} | {v.end for v in c.vehicles if v.end is not None})
    open_route = any(v.end is None for v in c.vehicles)
    dist, dur = _matrices(c, depot_nodes, open_route)
    n_depots = len(depot_nodes) + (1 if open_route else 0)
    depot_of = {node: k for k, node in enumerate(depot_nodes)}
    types, members, unit = _types(c, depot_of, len(depot_nodes) if open_route else None)
    if not any(v.capacity for v in c.vehicles):
        types = [t.replace(capacity=[INF] * len(c.demand_scale)) for t in types]
    clients, groups, client_order = _clients(c, n_depots, unit)
    data = pyvrp.ProblemData(
        [pyvrp.Location(0, 0) for _ in range(n_depots + len(c.orders))],
        clients,
        [pyvrp.Depot(location=k) for k in range(n_depots)],
        types,
        [dist],
        [dur],
        groups,
    )
    return _Data(data, members, client_order, unit / COST_SCALE)


def solve_pyvrp(
    c: Compiled,
    time_limit_s: float,
    *,
    seed: int = 0,
    progress: Progress | None = None,
    max_iterations: int | None = None,
    skip: frozenset[int] = frozenset(),
) -> EngineResult:
    """Solve with PyVRP; orders in ``skip`` (known to be unservable) are left out of the model."""
    t0 = time.perf_counter()
    reason = unsupported_reason(c)
    if reason is not None:
        raise ValueError(f"the pyvrp engine does not support {reason}")
    keep = [i for i in range(len(c.orders)) if i not in skip]
    d = _data(replace(c, orders=tuple(c.orders[i] for i in keep)))
    stop = _Stop(t0 + time_limit_s, t0, time_limit_s, max_iterations, progress, d.cost_unit)
    # Our integer costs can be large (currency * COST_SCALE); let penalties grow beyond PyVRP's
    # default cap so infeasible candidates never look cheap.
    params = pyvrp.SolveParams(penalty=pyvrp.PenaltyParams(max_penalty=MAX_PENALTY))
    result = pyvrp.solve(d.data, stop=stop, seed=seed, collect_stats=False, display=False, params=params)
    elapsed = time.perf_counter() - t0
    best = result.best
    if not best.is_feasible():
        return EngineResult("pyvrp", False, (), tuple(range(len(c.orders))), elapsed)
    free = [list(vs) for vs in d.members]
    routes: list[RouteSolution] = []
    served: set[int] = set()
    for route in best.routes():
        vehicle = free[route.vehicle_type()].pop(0)
        seq = tuple(keep[d.client_order[int(a.idx)]] for a in route if a.is_client())
        served.update(seq)
        routes.append(RouteSolution(vehicle, seq))
    dropped = tuple(i for i in range(len(c.orders)) if i not in served)
    return EngineResult("pyvrp", True, tuple(routes), dropped, elapsed)
