"""Integer view of a problem: what engines and the schedule builder work on."""

from __future__ import annotations

from dataclasses import dataclass

from cloud.routing.problem import Problem
from cloud.routing.travel import TravelMatrix, build_matrix

REQUIRED_PENALTY = 10**12  # cost of dropping a required order (times its priority)


@dataclass(frozen=True)
class CVehicle:
    start: int  # node
    end: int | None  # node, None for an open route
    capacity: tuple[int, ...]  # empty: unlimited
    shift: tuple[int, int]
    max_duration: int | None
    max_distance: int | None
    breaks: tuple[tuple[int, int, int], ...]  # (earliest start, latest start, duration)
    skills: frozenset[str]


@dataclass(frozen=True)
class COrder:
    node: int
    demand: tuple[int, ...]
    windows: tuple[tuple[int, int], ...]  # sorted; empty means any time
    service: int
    skills: frozenset[str]
    required: bool
    penalty_cost: float  # currency; for required orders REQUIRED_PENALTY * priority
    role: str  # "delivery" (from the start depot), "pickup" or "drop" of a pair
    partner: int | None  # order index of the other half of a pair


@dataclass(frozen=True)
class Compiled:
    problem: Problem
    matrix: TravelMatrix
    vehicles: tuple[CVehicle, ...]
    orders: tuple[COrder, ...]
    demand_scale: tuple[int, ...]  # integer units per problem unit, per dimension

    def allowed(self, order: int, vehicle: int) -> bool:
        return self.orders[order].skills <= self.vehicles[vehicle].skills

    def to_load(self, values: tuple[int, ...] | list[int]) -> tuple[float, ...]:
        return tuple(v / s for v, s in zip(values, self.demand_scale))


def _demand_scale(problem: Problem) -> tuple[int, ...]:
    scales = []
    for k in range(len(problem.dimensions)):
        values = [o.demand[k] for o in problem.orders if o.demand]
        values += [v.capacity[k] for v in problem.vehicles if v.capacity]
        scales.append(1 if all(float(x).is_integer() for x in values) else 1000)
    return tuple(scales)


def compile_problem(problem: Problem, matrix: TravelMatrix | None = None) -> Compiled:
    m = matrix if matrix is not None else build_matrix(problem)
    scale = _demand_scale(problem)
    dims = len(problem.dimensions)
    depot = problem.depot_index()
    index = problem.order_index()
    tick = m.to_ticks
    vehicles = tuple(
        CVehicle(
            start=depot[v.start_depot],
            end=None if v.end_depot is None else depot[v.end_depot],
            capacity=tuple(round(c * s) for c, s in zip(v.capacity, scale)),
            shift=(tick(v.shift.start), tick(v.shift.end)),
            max_duration=None if v.max_duration is None else tick(v.max_duration),
            max_distance=None if v.max_distance is None else round(v.max_distance * m.dist_per_unit),
            breaks=tuple(
                sorted((tick(b.window.start), tick(b.window.end), tick(b.duration)) for b in v.breaks)
            ),
            skills=v.skills,
        )
        for v in problem.vehicles
    )
    role: dict[int, tuple[str, int]] = {}
    for pair in problem.pickup_deliveries:
        p, d = index[pair.pickup], index[pair.delivery]
        role[p] = ("pickup", d)
        role[d] = ("drop", p)
    orders = []
    for i, o in enumerate(problem.orders):
        demand = tuple(round(x * s) for x, s in zip(o.demand, scale)) if o.demand else (0,) * dims
        r, partner = role.get(i, ("delivery", None))
        orders.append(
            COrder(
                node=m.order_node(i),
                demand=demand,
                windows=tuple(sorted((tick(w.start), tick(w.end)) for w in o.time_windows)),
                service=tick(o.service_time),
                skills=o.skills,
                required=o.penalty is None,
                penalty_cost=float(REQUIRED_PENALTY * o.priority) if o.penalty is None else o.penalty,
                role=r,
                partner=partner,
            )
        )
    return Compiled(problem, m, vehicles, tuple(orders), scale)
