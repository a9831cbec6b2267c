"""Why an order was left unserved: the first reason that holds, most specific first."""

from __future__ import annotations

from cloud.routing.compiled import Compiled
from cloud.routing.plan import Unserved, UnservedReason

# Reasons that hold for the order on its own, whatever else the fleet does.
IMPOSSIBLE: frozenset[UnservedReason] = frozenset(
    {"no_vehicle_with_skills", "exceeds_capacity", "time_window_unreachable", "exceeds_route_limits"}
)


def _fits_capacity(c: Compiled, order: int, vehicle: int) -> bool:
    cap = c.vehicles[vehicle].capacity
    return not cap or all(d <= q for d, q in zip(c.orders[order].demand, cap))


def _reachable(c: Compiled, order: int, vehicle: int) -> bool:
    """Can the vehicle drive out, serve the order in one of its windows and get back in its shift?"""
    veh, o, m = c.vehicles[vehicle], c.orders[order], c.matrix
    arrival = veh.shift[0] + int(m.duration[veh.start, o.node])
    windows = o.windows or ((0, 2**62),)
    for start, end in windows:
        if arrival > end:
            continue
        back = 0 if veh.end is None else int(m.duration[o.node, veh.end])
        finish = max(arrival, start) + o.service + back
        if finish <= veh.shift[1]:
            return True
    return False


def _within_limits(c: Compiled, order: int, vehicle: int) -> bool:
    veh, o, m = c.vehicles[vehicle], c.orders[order], c.matrix
    back_d = 0 if veh.end is None else int(m.distance[o.node, veh.end])
    back_t = 0 if veh.end is None else int(m.duration[o.node, veh.end])
    dist = int(m.distance[veh.start, o.node]) + back_d
    dur = int(m.duration[veh.start, o.node]) + o.service + back_t
    return (veh.max_distance is None or dist <= veh.max_distance) and (
        veh.max_duration is None or dur <= veh.max_duration
    )


def reason_for(c: Compiled, order: int) -> UnservedReason:
    vehicles = [v for v in range(len(c.vehicles)) if c.allowed(order, v)]
    if not vehicles:
        return "no_vehicle_with_skills"
    vehicles = [v for v in vehicles if _fits_capacity(c, order, v)]
    if not vehicles:
        return "exceeds_capacity"
    vehicles = [v for v in vehicles if _reachable(c, order, v)]
    if not vehicles:
        return "time_window_unreachable"
    if not any(_within_limits(c, order, v) for v in vehicles):
        return "exceeds_route_limits"
    return "no_room_in_fleet" if c.orders[order].required else "penalty_cheaper_than_serving"


def unserved_list(c: Compiled, orders: list[int], reason: UnservedReason | None = None) -> list[Unserved]:
    ids = c.problem.orders
    return [Unserved(order_id=ids[i].id, reason=reason or reason_for(c, i)) for i in orders]
