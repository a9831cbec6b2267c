"""The checker accepts good plans and catches each violated constraint on hand-made bad plans."""

from __future__ import annotations

from pathlib import Path

import pytest
from routing_cases import HOUR, loc, small_problem

from cloud.routing.checker import check_plan
from cloud.routing.compiled import compile_problem
from cloud.routing.instances import read_solution, read_vrplib
from cloud.routing.plan import Plan, Unserved
from cloud.routing.problem import Break, Order, PickupDelivery, Problem, TimeWindow
from cloud.routing.schedule import RouteSolution, build_plan

DATA = Path("/work/shared/data/vrp")


def plan_for(problem: Problem, routes: list[tuple[int, list[str]]], unserved: tuple[str, ...] = ()) -> Plan:
    c = compile_problem(problem)
    index = problem.order_index()
    sols = [RouteSolution(v, tuple(index[o] for o in orders)) for v, orders in routes]
    missing = [Unserved(order_id=o, reason="no_room_in_fleet") for o in unserved]
    return build_plan(c, sols, missing, engine="hand", solve_time_s=0, time_limit_s=1, seed=0)


GOOD_ROUTES = [(0, ["o0", "o1", "o4"]), (1, ["o2", "o3", "o5"])]


def violations(problem: Problem, plan: Plan) -> str:
    report = check_plan(problem, plan)
    assert not report.ok
    return "\n".join(report.violations)


def with_stop(plan: Plan, route: int, stop: int, **changes: object) -> Plan:
    routes = list(plan.routes)
    stops = list(routes[route].stops)
    stops[stop] = stops[stop].model_copy(update=changes)
    routes[route] = routes[route].model_copy(update={"stops": tuple(stops)})
    return plan.model_copy(update={"routes": tuple(routes)})


def test_hand_made_plan_passes() -> None:
    p = small_problem()
    assert check_plan(p, plan_for(p, GOOD_ROUTES)).ok


def test_time_window_violation() -> None:
    base = small_problem()
    plan = plan_for(base, GOOD_ROUTES)
    orders = list(base.orders)
    orders[0] = orders[0].model_copy(update={"time_windows": (TimeWindow(start=5 * HOUR, end=6 * HOUR),)})
    assert "outside every time window" in violations(small_problem(orders=tuple(orders)), plan)


def test_capacity_violation() -> None:
    plan = plan_for(small_problem(), GOOD_ROUTES)
    tight = tuple(v.model_copy(update={"capacity": (50.0, 10.0)}) for v in small_problem().vehicles)
    assert "over capacity" in violations(small_problem(vehicles=tight), plan)


def test_skill_violation() -> None:
    plan = plan_for(small_problem(), GOOD_ROUTES)
    base = small_problem()
    orders = list(base.orders)
    orders[0] = orders[0].model_copy(update={"skills": frozenset({"cold"})})
    vehicles = (base.vehicles[0], base.vehicles[1].model_copy(update={"skills": frozenset({"cold"})}))
    assert "needs skills" in violations(small_problem(orders=tuple(orders), vehicles=vehicles), plan)


def test_missing_and_duplicate_orders() -> None:
    p = small_problem()
    assert "neither served nor listed" in violations(
        p, plan_for(p, [(0, ["o0", "o1", "o4"]), (1, ["o2", "o3"])])
    )
    dup = plan_for(p, [(0, ["o0", "o1", "o4", "o5"]), (1, ["o2", "o3", "o5"])])
    assert "served more than once" in violations(p, dup)


def test_arrival_faster_than_travel() -> None:
    p = small_problem()
    plan = plan_for(p, GOOD_ROUTES)
    stop = plan.routes[0].stops[2]
    bad = with_stop(
        plan, 0, 2, arrival=stop.arrival - 60, start=stop.start - 60, departure=stop.departure - 60
    )
    assert "earliest possible" in violations(p, bad)


def test_wrong_load_and_distance_and_cost() -> None:
    p = small_problem()
    plan = plan_for(p, GOOD_ROUTES)
    assert "load" in violations(p, with_stop(plan, 0, 1, load=(99.0, 9.0)))
    assert "distance_from_previous" in violations(p, with_stop(plan, 0, 1, distance_from_previous=1.0))
    route = plan.routes[0].model_copy(update={"cost": 1.0})
    assert "cost" in violations(p, plan.model_copy(update={"routes": (route, plan.routes[1])}))
    assert "total_distance" in violations(p, plan.model_copy(update={"total_distance": 1.0}))


def test_missing_break() -> None:
    p = small_problem()
    plan = plan_for(p, GOOD_ROUTES)
    brk = Break(window=TimeWindow(start=0, end=HOUR), duration=900)
    vehicles = (p.vehicles[0].model_copy(update={"breaks": (brk,)}), p.vehicles[1])
    assert "breaks taken" in violations(small_problem(vehicles=vehicles), plan)


def test_break_outside_window() -> None:
    brk = Break(window=TimeWindow(start=0, end=HOUR), duration=900)
    p = small_problem()
    vehicles = (p.vehicles[0].model_copy(update={"breaks": (brk,)}), p.vehicles[1])
    p = small_problem(vehicles=vehicles)
    c = compile_problem(p)
    index = p.order_index()
    sols = [
        RouteSolution(0, (index["o0"], index["o1"], index["o4"]), (1,)),
        RouteSolution(1, (index["o2"], index["o3"], index["o5"])),
    ]
    plan = build_plan(c, sols, [], engine="hand", solve_time_s=0, time_limit_s=1, seed=0)
    assert check_plan(p, plan).ok
    kinds = [s.kind for s in plan.routes[0].stops]
    b = kinds.index("break")
    brk_stop = plan.routes[0].stops[b]
    late = with_stop(
        plan,
        0,
        b,
        start=brk_stop.start + 2 * HOUR,
        arrival=brk_stop.arrival + 2 * HOUR,
        departure=brk_stop.departure + 2 * HOUR,
    )
    assert "outside its window" in violations(p, late)


def test_pickup_after_delivery() -> None:
    base = small_problem()
    p = small_problem(pickup_deliveries=(PickupDelivery(pickup="o0", delivery="o1"),))
    assert check_plan(p, plan_for(p, GOOD_ROUTES)).ok
    reversed_plan = plan_for(p, [(0, ["o1", "o0", "o4"]), (1, ["o2", "o3", "o5"])])
    text = violations(p, reversed_plan)
    assert "not picked up before delivery" in text
    split = plan_for(p, [(0, ["o0", "o4"]), (1, ["o1", "o2", "o3", "o5"])])
    assert "not picked up before delivery" in violations(p, split)
    assert base.pickup_deliveries == ()


def test_shift_and_route_limits() -> None:
    plan = plan_for(small_problem(), GOOD_ROUTES)
    base = small_problem().vehicles
    short_shift = tuple(v.model_copy(update={"shift": TimeWindow(start=0, end=1800)}) for v in base)
    assert "after the shift end" in violations(small_problem(vehicles=short_shift), plan)
    short_dur = tuple(v.model_copy(update={"max_duration": 1800.0}) for v in base)
    assert "over max_duration" in violations(small_problem(vehicles=short_dur), plan)
    short_dist = tuple(v.model_copy(update={"max_distance": 10.0}) for v in base)
    assert "over max_distance" in violations(small_problem(vehicles=short_dist), plan)


def test_status_feasible_with_required_unserved() -> None:
    p = small_problem()
    plan = plan_for(p, [(0, ["o0", "o1", "o4"]), (1, ["o2", "o3"])], unserved=("o5",))
    assert plan.status == "partial" and check_plan(p, plan).ok
    assert "status" in violations(p, plan.model_copy(update={"status": "feasible"}))


def test_open_route_must_not_return() -> None:
    base = small_problem()
    vehicles = (base.vehicles[0].model_copy(update={"end_depot": None}), base.vehicles[1])
    p = small_problem(vehicles=vehicles)
    plan = plan_for(p, GOOD_ROUTES)
    assert check_plan(p, plan).ok
    assert plan.routes[0].stops[-1].kind == "order"
    closed = plan_for(small_problem(), GOOD_ROUTES)
    assert "open route has an end stop" in violations(p, closed)


def test_unserved_optional_penalty_counted() -> None:
    base = small_problem()
    orders = list(base.orders)
    orders[5] = Order(id="o5", location=loc(0, -10), demand=(30, 2), service_time=300, penalty=7.5)
    p = small_problem(orders=tuple(orders))
    plan = plan_for(p, [(0, ["o0", "o1", "o4"]), (1, ["o2", "o3"])], unserved=("o5",))
    assert plan.status == "feasible" and plan.penalty_cost == 7.5
    assert check_plan(p, plan).ok


@pytest.mark.parametrize("name,distance", [("R101", 1637.7), ("C201", 589.1)])
def test_best_known_tour_is_feasible_and_matches(name: str, distance: float) -> None:
    problem = read_vrplib(DATA / "solomon" / f"{name}.vrp")
    routes = [(k, tour) for k, tour in enumerate(read_solution(DATA / "solomon" / f"{name}.dimacs.sol"))]
    plan = plan_for(problem, routes)
    assert check_plan(problem, plan).ok
    assert plan.total_distance == pytest.approx(distance, abs=0.05)


def test_schedule_leaves_late_instead_of_waiting() -> None:
    base = small_problem()
    orders = (
        Order(id="a", location=loc(10, 0), service_time=300),
        Order(
            id="b",
            location=loc(20, 0),
            service_time=300,
            time_windows=(TimeWindow(start=2 * HOUR, end=3 * HOUR),),
        ),
    )
    p = small_problem(orders=orders, vehicles=base.vehicles[:1])
    plan = plan_for(p, [(0, ["a", "b"])])
    assert check_plan(p, plan).ok
    route = plan.routes[0]
    assert all(s.wait == 0 for s in route.stops)
    assert route.stops[0].departure == 2 * HOUR - 1500  # 10 + 10 min driving, 5 min service
    assert route.duration == 1500 + 300 + 1200
