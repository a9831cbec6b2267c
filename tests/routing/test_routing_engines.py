"""Every engine solution passes the independent checker; model features behave as specified."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
from routing_cases import HOUR, loc, rich_problem, small_problem

from cloud.routing.checker import check_plan
from cloud.routing.compiled import compile_problem
from cloud.routing.engines import ENGINE_NAMES, ENGINES, EngineName
from cloud.routing.instances import read_vrplib
from cloud.routing.plan import Plan
from cloud.routing.problem import (
    Depot,
    HaversineTravel,
    Location,
    MatrixTravel,
    Order,
    Problem,
    TimeWindow,
    Vehicle,
)
from cloud.routing.service import solve

R101 = Path("/work/shared/data/vrp/solomon/R101.vrp")


def solved(problem: Problem, engine: str = "ortools", limit: float = 0.5, **kw: object) -> Plan:
    plan = solve(problem, limit, engine, **kw)  # type: ignore[arg-type]
    report = check_plan(problem, plan)
    assert report.ok, report.violations
    return plan


def route_of(plan: Plan, vehicle: str) -> list[str]:
    for r in plan.routes:
        if r.vehicle_id == vehicle:
            return [s.order_id or s.kind for s in r.stops]
    return []


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_small_problem_every_engine(engine: str) -> None:
    plan = solved(small_problem(), engine, 1.2)
    assert plan.status == "feasible" and not plan.unserved
    assert plan.engine.endswith(engine) or engine == "auto"


@pytest.mark.parametrize("engine", ["ortools", "auto"])
def test_rich_problem_breaks_skills_pairs_windows_open(engine: str) -> None:
    plan = solved(rich_problem(), engine, 1.0)
    assert plan.status == "feasible"
    cold = route_of(plan, "cold")
    assert "frozen" in cold  # the only refrigerated vehicle
    cold_route = next(r for r in plan.routes if r.vehicle_id == "cold")
    breaks = [s for s in cold_route.stops if s.kind == "break"]
    assert len(breaks) == 1 and HOUR <= breaks[0].start <= 2 * HOUR
    for r in plan.routes:
        ids = [s.order_id for s in r.stops]
        if "pick" in ids:
            assert "drop" in ids and ids.index("pick") < ids.index("drop")
    stop = next(s for r in plan.routes for s in r.stops if s.order_id == "two_windows")
    assert 600 <= stop.start <= 900 or 3 * HOUR <= stop.start <= 4 * HOUR
    if route_of(plan, "open"):
        assert route_of(plan, "open")[-1] != "end"


@pytest.mark.parametrize("engine", ["ortools", "pyvrp"])
def test_second_time_window_used_when_first_is_unreachable(engine: str) -> None:
    far = Order(
        id="far",
        location=loc(60, 0),
        time_windows=(TimeWindow(start=0, end=600), TimeWindow(start=2 * HOUR, end=3 * HOUR)),
    )
    plan = solved(small_problem(orders=(far,)), engine)
    stop = next(s for r in plan.routes for s in r.stops if s.order_id == "far")
    assert 2 * HOUR <= stop.start <= 3 * HOUR


@pytest.mark.parametrize("engine", ["ortools", "auto"])
def test_unserved_orders_come_with_reasons(engine: str) -> None:
    base = small_problem()
    orders = base.orders[:2] + (
        Order(id="heavy", location=loc(5, 5), demand=(500, 1)),
        Order(id="too_early", location=loc(200, 0), time_windows=(TimeWindow(start=0, end=60),)),
        Order(id="not_worth_it", location=loc(-150, 0), demand=(1, 0), penalty=0.5),
        Order(
            id="after_shifts", location=loc(1, 1), time_windows=(TimeWindow(start=9 * HOUR, end=10 * HOUR),)
        ),
    )
    plan = solved(small_problem(orders=orders), engine, 1.2)  # auto: PyVRP cannot drop required orders
    reasons = {u.order_id: u.reason for u in plan.unserved}
    assert reasons == {
        "heavy": "exceeds_capacity",
        "too_early": "time_window_unreachable",
        "not_worth_it": "penalty_cheaper_than_serving",
        "after_shifts": "time_window_unreachable",
    }
    assert plan.status == "partial" and plan.penalty_cost == 0.5


def test_fleet_too_small_drops_lowest_priority_first() -> None:
    base = small_problem()
    one = (base.vehicles[0],)  # capacity 100: three of six orders of 30
    orders = tuple(o.model_copy(update={"priority": 5 if i < 3 else 1}) for i, o in enumerate(base.orders))
    plan = solved(small_problem(vehicles=one, orders=orders))
    assert plan.status == "partial"
    assert {u.order_id for u in plan.unserved} == {"o3", "o4", "o5"}
    assert {u.reason for u in plan.unserved} == {"no_room_in_fleet"}


@pytest.mark.parametrize("engine", ["ortools", "pyvrp", "auto"])
def test_deterministic_for_a_seed(engine: str) -> None:
    problem = read_vrplib(R101)
    # Stopping by iteration count (the time limit is far away) makes runs reproducible.
    a = solve(problem, 120, engine, seed=3, max_iterations=15)  # type: ignore[arg-type]
    b = solve(problem, 120, engine, seed=3, max_iterations=15)  # type: ignore[arg-type]
    assert [r.stops for r in a.routes] == [r.stops for r in b.routes]
    assert check_plan(problem, a).ok


def test_tiny_time_limit_still_returns_a_plan() -> None:
    problem = read_vrplib(R101)
    plan = solve(problem, 0.01, "auto")
    assert plan.status != "no_solution" and plan.routes
    assert check_plan(problem, plan).ok


def test_progress_reports_improving_costs_up_to_the_end() -> None:
    seen: list[tuple[float | None, float]] = []
    solved(small_problem(), "auto", 1.2, progress=lambda best, frac: seen.append((best, frac)))
    costs = [c for c, _ in seen if c is not None]
    assert costs and costs == sorted(costs, reverse=True)
    assert seen[-1][1] == 1.0
    assert all(0.0 <= f <= 1.0 for _, f in seen)


def test_pyvrp_rejects_what_it_cannot_model() -> None:
    with pytest.raises(ValueError, match="breaks"):
        solve(rich_problem(), 0.5, "pyvrp")


def test_unknown_engine_is_named() -> None:
    with pytest.raises(ValueError, match="engine: unknown engine 'magic'; choose auto, ortools, pyvrp"):
        solve(small_problem(), 0.5, "magic")  # type: ignore[arg-type]


def test_the_registry_is_what_callers_may_name() -> None:
    """The API's engine enum, the CLI's choices and the registry are one list."""
    assert ENGINE_NAMES == ("auto", *ENGINES) == get_args(EngineName)
    for name, engine in ENGINES.items():
        assert engine.name == name and engine.unsupported(compile_problem(small_problem())) is None


def _geo_problem(travel: object, locations: list[Location]) -> Problem:
    return Problem(
        name="geo",
        depots=(Depot(id="dc", location=locations[0]),),
        vehicles=(
            Vehicle(
                id="van",
                start_depot="dc",
                end_depot="dc",
                capacity=(10,),
                cost_per_hour=20.0,
                shift=TimeWindow(start=8 * HOUR, end=18 * HOUR),
                max_duration=6 * HOUR,
                max_distance=200.0,
            ),
        ),
        orders=tuple(
            Order(
                id=f"c{i}",
                location=where,
                demand=(1,),
                service_time=300,
                time_windows=(TimeWindow(start=9 * HOUR, end=12 * HOUR),),
            )
            for i, where in enumerate(locations[1:])
        ),
        travel=travel,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("engine", ["ortools", "pyvrp"])
def test_haversine_and_matrix_travel(engine: str) -> None:
    points = [Location(lat=52.52 + 0.01 * i, lon=13.40 - 0.02 * (i % 3)) for i in range(6)]
    geo = solved(_geo_problem(HaversineTravel(speed_kmh=30), points), engine)
    assert geo.status == "feasible" and 0 < geo.total_distance < 50
    size = 4
    dist = tuple(tuple(float(abs(i - j) * 1000) for j in range(size)) for i in range(size))
    dur = tuple(tuple(float(abs(i - j) * 120) for j in range(size)) for i in range(size))
    mat = solved(
        _geo_problem(
            MatrixTravel(distances_m=dist, durations_s=dur), [Location(index=i) for i in range(size)]
        ),
        engine,
    )
    assert mat.status == "feasible" and mat.total_distance == pytest.approx(6.0)


@pytest.mark.parametrize("engine", ["ortools", "pyvrp"])
def test_two_depots_and_an_open_route(engine: str) -> None:
    base = small_problem()
    depots = (*base.depots, Depot(id="east", location=loc(30, 0)))
    vehicles = (
        base.vehicles[0].model_copy(update={"end_depot": None, "fixed_cost": 1.0}),
        base.vehicles[1].model_copy(update={"start_depot": "east", "end_depot": "east"}),
    )
    plan = solved(small_problem(depots=depots, vehicles=vehicles), engine, 1.0)
    assert plan.status == "feasible"
    for route in plan.routes:
        if route.vehicle_id == "v1":
            assert route.stops[-1].kind != "end"
        else:
            assert route.stops[-1].kind == "end"


@pytest.mark.parametrize("engine", ["auto", "ortools", "pyvrp"])
def test_no_orders_is_an_empty_feasible_plan(engine: str) -> None:
    problem = small_problem(orders=[])
    plan = solve(problem, 1.0, engine)  # type: ignore[arg-type]
    assert plan.status == "feasible" and plan.routes == () and plan.unserved == ()
    assert check_plan(problem, plan).ok
