"""OR-Tools routing engine: the full model (breaks, skills, pickup-delivery, multi windows).

The only module that imports OR-Tools. All transits are registered as matrices or unary
vectors (evaluated in C++), never as Python callbacks: with callbacks the search spends
most of its time crossing into Python.
"""

from __future__ import annotations

import itertools
import random
import time
from dataclasses import dataclass, replace

import numpy as np
from ortools.constraint_solver import pywrapcp, routing_enums_pb2, routing_parameters_pb2
from ortools.util.optional_boolean_pb2 import BOOL_FALSE

from cloud.routing.compiled import Compiled
from cloud.routing.engine import EngineResult, Progress
from cloud.routing.schedule import RouteSolution

FIRST_SOLUTION_MAX_S = 600.0  # safety net only: first solutions take milliseconds to seconds
COST_SCALE = 1_000_000  # integer objective units per currency unit
REQUIRED_PENALTY = 100_000 * COST_SCALE  # per priority level; dominates any realistic route cost
FSS = routing_enums_pb2.FirstSolutionStrategy.Value
LSM = routing_enums_pb2.LocalSearchMetaheuristic.Value


@dataclass(frozen=True)
class OrtoolsConfig:
    """Search settings; the defaults were picked by measurement on Solomon (see bench/vrp.py)."""

    first_solution: str = "LOCAL_CHEAPEST_INSERTION"
    metaheuristic: str = "GUIDED_LOCAL_SEARCH"
    gls_lambda: float = 0.3
    heuristic_lns: bool = False  # insertion-heuristic LNS operators (slow; GLS needs many cheap steps)
    gls_share: float = 0.3  # share of the time for GLS; the rest goes to ruin-and-recreate restarts
    ruin_min: int = 5  # orders removed per restart: a random cluster of this many nearest orders
    ruin_max: int = 15
    accept_worse: float = 0.01  # restart acceptance threshold (relative) at the start, decays to 0
    descent_limit_s: float = 2.0  # cap on one restart's descent
    lean_descent: bool = False  # restarts: skip the costliest operators, for more restarts per second


@dataclass
class _Model:
    manager: pywrapcp.RoutingIndexManager
    routing: pywrapcp.RoutingModel
    time: pywrapcp.RoutingDimension
    breaks: dict[int, list[pywrapcp.IntervalVar]]


def _nodes_and_matrices(c: Compiled) -> tuple[int, list[list[int]], list[list[int]], int | None]:
    """Distance and time (service of the origin + travel) matrices, plus a free end node for open routes."""
    m = c.matrix
    n = m.size
    service = [0] * n
    for o in c.orders:
        service[o.node] = o.service
    dist = m.distance.tolist()
    dur = [[service[i] + int(m.duration[i, j]) for j in range(n)] for i in range(n)]
    open_end: int | None = None
    if any(v.end is None for v in c.vehicles):
        open_end = n
        for i in range(n):
            dist[i].append(0)
            dur[i].append(service[i])
        dist.append([0] * (n + 1))
        dur.append([0] * (n + 1))
    return len(dist), dist, dur, open_end


def _scaled(matrix: list[list[int]], coef: float) -> list[list[int]]:
    return [[round(x * coef) for x in row] for row in matrix]


def _add_costs(c: Compiled, mdl: _Model, dist: list[list[int]]) -> None:
    routing, specs = mdl.routing, c.problem.vehicles
    by_coef: dict[float, int] = {}
    for v, spec in enumerate(specs):
        coef = spec.cost_per_km * COST_SCALE / c.matrix.dist_per_unit
        if coef not in by_coef:
            by_coef[coef] = routing.RegisterTransitMatrix(_scaled(dist, coef))
        routing.SetArcCostEvaluatorOfVehicle(by_coef[coef], v)
        routing.SetFixedCostOfVehicle(round(spec.fixed_cost * COST_SCALE), v)
        per_tick = spec.cost_per_hour * COST_SCALE / 3600 / c.matrix.ticks_per_second
        if per_tick > 0:
            mdl.time.SetSpanCostCoefficientForVehicle(max(1, round(per_tick)), v)


def _add_capacities(c: Compiled, mdl: _Model, n_nodes: int) -> None:
    routing = mdl.routing
    has_pairs = any(o.role != "delivery" for o in c.orders)
    for k in range(len(c.demand_scale)):
        if all(not v.capacity for v in c.vehicles):
            continue
        transit = [0] * n_nodes
        for o in c.orders:
            transit[o.node] = -o.demand[k] if has_pairs and o.role != "pickup" else o.demand[k]
        total = sum(o.demand[k] for o in c.orders) + 1
        caps = [v.capacity[k] if v.capacity else total for v in c.vehicles]
        cb = routing.RegisterUnaryTransitVector(transit)
        # With pickup-delivery pairs the load starts at what is delivered from the depot and
        # changes by +/- demand per stop; otherwise cumulative demand (the same feasibility).
        routing.AddDimensionWithVehicleCapacity(cb, 0, caps, not has_pairs, f"load{k}")


def _add_time(c: Compiled, mdl: _Model) -> None:
    routing, time_dim, manager = mdl.routing, mdl.time, mdl.manager
    for v, veh in enumerate(c.vehicles):
        time_dim.CumulVar(routing.Start(v)).SetRange(*veh.shift)
        time_dim.CumulVar(routing.End(v)).SetRange(*veh.shift)
        if veh.max_duration is not None:
            time_dim.SetSpanUpperBoundForVehicle(veh.max_duration, v)
    horizon = max(v.shift[1] for v in c.vehicles)
    for o in c.orders:
        if not o.windows:
            continue
        index = manager.NodeToIndex(o.node)
        windows = [(lo, min(hi, horizon)) for lo, hi in o.windows if lo <= horizon]
        if not windows:  # after every shift: it can only stay unserved (an empty domain would fail the model)
            routing.ActiveVar(index).SetValue(0)
            continue
        var = time_dim.CumulVar(index)
        var.SetRange(windows[0][0], windows[-1][1])
        for (_, end), (nxt, _) in itertools.pairwise(windows):
            if nxt - end > 1:
                var.RemoveInterval(end + 1, nxt - 1)


def _add_breaks(c: Compiled, mdl: _Model) -> None:
    if not any(v.breaks for v in c.vehicles):
        return
    routing, manager, solver = mdl.routing, mdl.manager, mdl.routing.solver()
    visit = [0] * routing.Size()
    service = {o.node: o.service for o in c.orders}
    for index in range(routing.Size()):
        visit[index] = service.get(manager.IndexToNode(index), 0)
    for v, veh in enumerate(c.vehicles):
        if not veh.breaks:
            continue
        intervals = [
            solver.FixedDurationIntervalVar(lo, hi, dur, False, f"break_{v}_{k}")
            for k, (lo, hi, dur) in enumerate(veh.breaks)
        ]
        mdl.time.SetBreakIntervalsOfVehicle(intervals, v, visit)
        mdl.breaks[v] = intervals


def _add_orders(c: Compiled, mdl: _Model) -> None:
    routing, manager, solver = mdl.routing, mdl.manager, mdl.routing.solver()
    all_vehicles = list(range(len(c.vehicles)))
    for i, o in enumerate(c.orders):
        index = manager.NodeToIndex(o.node)
        penalty = (
            REQUIRED_PENALTY * c.problem.orders[i].priority
            if o.required
            else round(o.penalty_cost * COST_SCALE)
        )
        routing.AddDisjunction([index], penalty)
        allowed = [v for v in all_vehicles if c.allowed(i, v)]
        if len(allowed) < len(all_vehicles):
            routing.VehicleVar(index).SetValues([-1, *allowed])
        if o.role == "pickup" and o.partner is not None:
            drop = manager.NodeToIndex(c.orders[o.partner].node)
            routing.AddPickupAndDelivery(index, drop)
            solver.Add(routing.ActiveVar(index) == routing.ActiveVar(drop))
            solver.Add(routing.VehicleVar(index) == routing.VehicleVar(drop))
            solver.Add(mdl.time.CumulVar(index) <= mdl.time.CumulVar(drop))


def _build(c: Compiled) -> _Model:
    n_nodes, dist, dur, open_end = _nodes_and_matrices(c)
    starts = [v.start for v in c.vehicles]
    ends = [v.end if v.end is not None else open_end for v in c.vehicles]
    manager = pywrapcp.RoutingIndexManager(n_nodes, len(c.vehicles), starts, ends)
    routing = pywrapcp.RoutingModel(manager)
    horizon = max(v.shift[1] for v in c.vehicles)
    time_cb = routing.RegisterTransitMatrix(dur)
    routing.AddDimension(time_cb, horizon, horizon, False, "time")
    mdl = _Model(manager, routing, routing.GetDimensionOrDie("time"), {})
    _add_costs(c, mdl, dist)
    _add_capacities(c, mdl, n_nodes)
    _add_time(c, mdl)
    if any(v.max_distance is not None for v in c.vehicles):
        big = int(sum(max(row) for row in dist)) + 1
        caps = [v.max_distance if v.max_distance is not None else big for v in c.vehicles]
        routing.AddDimensionWithVehicleCapacity(
            routing.RegisterTransitMatrix(dist), 0, caps, True, "distance"
        )
    _add_breaks(c, mdl)
    _add_orders(c, mdl)
    return mdl


HEURISTIC_LNS = (
    "use_global_cheapest_insertion_path_lns",
    "use_local_cheapest_insertion_path_lns",
    "use_relocate_path_global_cheapest_insertion_insert_unperformed",
    "use_global_cheapest_insertion_visit_types_lns",
    "use_local_cheapest_insertion_visit_types_lns",
)


COSTLY_OPERATORS = (
    "use_lin_kernighan",
    "use_relocate_expensive_chain",
    "use_shortest_path_swap_active",
    "use_shortest_path_two_opt",
    "use_swap_active_chain",
    "use_make_chain_inactive",
)
PAIR_OPERATORS = (
    "use_relocate_pair",
    "use_light_relocate_pair",
    "use_exchange_pair",
    "use_relocate_subtrip",
    "use_exchange_subtrip",
)


def search_parameters(
    cfg: OrtoolsConfig,
    time_limit_s: float,
    solution_limit: int | None,
    lean: tuple[str, ...] = (),
) -> routing_parameters_pb2.RoutingSearchParameters:
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = FSS.Value(cfg.first_solution)
    params.local_search_metaheuristic = LSM.Value(cfg.metaheuristic)
    params.guided_local_search_lambda_coefficient = cfg.gls_lambda
    for name in (*(() if cfg.heuristic_lns else HEURISTIC_LNS), *lean):
        setattr(params.local_search_operators, name, BOOL_FALSE)
    params.time_limit.FromMilliseconds(max(1, int(time_limit_s * 1000)))
    if solution_limit is not None:
        params.solution_limit = solution_limit
    return params


def _extract(
    c: Compiled, mdl: _Model, solution: pywrapcp.Assignment
) -> tuple[list[RouteSolution], list[int]]:
    routing, manager = mdl.routing, mdl.manager
    node_to_order = {o.node: i for i, o in enumerate(c.orders)}
    routes: list[RouteSolution] = []
    served: set[int] = set()
    for v in range(len(c.vehicles)):
        seq: list[int] = []
        ends: list[int] = []
        index = solution.Value(routing.NextVar(routing.Start(v)))
        while not routing.IsEnd(index):
            i = node_to_order[manager.IndexToNode(index)]
            seq.append(i)
            ends.append(solution.Value(mdl.time.CumulVar(index)) + c.orders[i].service)
            index = solution.Value(routing.NextVar(index))
        served.update(seq)
        gaps: list[int] = []
        if seq:
            for interval in mdl.breaks.get(v, []):
                start = solution.StartValue(interval)
                gaps.append(sum(1 for e in ends if e <= start))
        routes.append(RouteSolution(v, tuple(seq), tuple(gaps)))
    dropped = [i for i in range(len(c.orders)) if i not in served]
    return routes, dropped


def solve_ortools(
    c: Compiled,
    time_limit_s: float,
    *,
    progress: Progress | None = None,
    solution_limit: int | None = None,
    config: OrtoolsConfig | None = None,
    seed: int = 0,
) -> EngineResult:
    t0 = time.perf_counter()
    cfg = config or OrtoolsConfig()
    mdl = _build(c)
    routing = mdl.routing
    if progress is not None:
        routing.AddAtSolutionCallback(
            lambda: progress(
                routing.CostVar().Max() / COST_SCALE, min(1.0, (time.perf_counter() - t0) / time_limit_s)
            )
        )
    # Phase 1: the first solution is never cut short (every order may be dropped, so one always
    # exists); phase 2 improves it with the metaheuristic for the rest of the time limit.
    best = routing.SolveWithParameters(search_parameters(cfg, FIRST_SOLUTION_MAX_S, 1))
    if best is None:
        return EngineResult("ortools", False, (), tuple(range(len(c.orders))), time.perf_counter() - t0)
    deadline = t0 + time_limit_s
    gls_until = t0 + cfg.gls_share * time_limit_s
    remaining = gls_until - time.perf_counter()
    if remaining > 0.005 and (solution_limit is None or solution_limit > 1):
        improved = routing.SolveFromAssignmentWithParameters(
            best, search_parameters(cfg, remaining, solution_limit)
        )
        if improved is not None:
            best = improved
    cost = best.ObjectiveValue()
    routes, dropped = _extract(c, mdl, best)
    if cfg.gls_share < 1.0:
        start = (cost, routes, dropped)
        routes, dropped = _ruin_recreate(c, mdl, cfg, start, deadline, seed, solution_limit)
    return EngineResult("ortools", True, tuple(routes), tuple(dropped), time.perf_counter() - t0)


def _index_routes(c: Compiled, mdl: _Model, routes: list[RouteSolution]) -> list[list[int]]:
    per_vehicle: list[list[int]] = [[] for _ in c.vehicles]
    for r in routes:
        per_vehicle[r.vehicle] = [mdl.manager.NodeToIndex(c.orders[i].node) for i in r.orders]
    return per_vehicle


def _ruin_recreate(
    c: Compiled,
    mdl: _Model,
    cfg: OrtoolsConfig,
    start: tuple[int, list[RouteSolution], list[int]],
    deadline: float,
    seed: int,
    max_restarts: int | None,
) -> tuple[list[RouteSolution], list[int]]:
    """Restarts: remove a cluster of nearby orders, let OR-Tools' descent reinsert and improve.

    Accepts slightly worse solutions early on (threshold decaying to zero) and keeps the best.
    """
    routing, rng = mdl.routing, random.Random(seed)
    nodes = np.array([o.node for o in c.orders])
    near = np.argsort(c.matrix.distance[np.ix_(nodes, nodes)], axis=1, kind="stable")
    descent = replace(cfg, metaheuristic="GREEDY_DESCENT")
    has_pairs = any(o.partner is not None for o in c.orders)
    lean = (*COSTLY_OPERATORS, *(() if has_pairs else PAIR_OPERATORS)) if cfg.lean_descent else ()
    best = current = start
    t_begin = time.perf_counter()
    span = max(1e-3, deadline - t_begin)
    restarts = 0
    while (left := deadline - time.perf_counter()) > 0.01 and (
        max_restarts is None or restarts < max_restarts
    ):
        restarts += 1
        k = min(len(c.orders), rng.randint(cfg.ruin_min, cfg.ruin_max))
        removed = {int(nodes[j]) for j in near[rng.randrange(len(c.orders))][:k]}
        partial = [
            [i for i in r if mdl.manager.IndexToNode(i) not in removed]
            for r in _index_routes(c, mdl, current[1])
        ]
        # RoutesToAssignment only fills next-variables; ReadAssignmentFromRoutes would run the
        # solver under the previous search's (by then expired) time limit and fail.
        init = routing.solver().Assignment()
        if not routing.RoutesToAssignment(partial, True, True, init):
            continue
        sol = routing.SolveFromAssignmentWithParameters(
            init, search_parameters(descent, min(left, cfg.descent_limit_s), None, lean)
        )
        if sol is None:
            continue
        cost = sol.ObjectiveValue()
        progress_made = restarts / max_restarts if max_restarts else (time.perf_counter() - t_begin) / span
        threshold = cfg.accept_worse * max(0.0, 1.0 - progress_made)
        if cost < best[0] or cost <= current[0] * (1.0 + threshold):
            routes, dropped = _extract(c, mdl, sol)
            current = (cost, routes, dropped)
            if cost < best[0]:
                best = current
    return best[1], best[2]
