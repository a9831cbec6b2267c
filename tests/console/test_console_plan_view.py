"""What the route page draws from a plan: a stop served outside every window of its order is late (the
timeline and the map mark it, the loads table counts it); stops inside a window are not."""

from __future__ import annotations

from seed import small_problem

from cloud.console.route_pages import _summary, plan_data
from cloud.routing.plan import Plan, Route, Stop
from cloud.routing.problem import Problem

HOUR = 3600.0


def test_a_stop_outside_its_windows_is_marked_late() -> None:
    problem = Problem.model_validate(small_problem("late", orders=2, oversized=False))
    w0 = problem.orders[0].time_windows[0]
    w1 = problem.orders[1].time_windows[0]
    stops = (
        Stop(kind="start", arrival=6 * HOUR, start=6 * HOUR, departure=6 * HOUR, load=(20.0,)),
        Stop(kind="order", order_id="store-0", arrival=w0.start, start=w0.start, departure=w0.start + 600,
             load=(10.0,)),
        Stop(kind="order", order_id="store-1", arrival=w1.end + 900, start=w1.end + 900, departure=w1.end + 1500,
             load=(0.0,)),
        Stop(kind="end", arrival=w1.end + 2400, start=w1.end + 2400, departure=w1.end + 2400, load=(0.0,)),
    )
    plan = Plan(problem="late", status="feasible", engine="test",
                routes=(Route(vehicle_id="van-1", stops=stops, distance=12.0, duration=3 * HOUR, cost=12.0),))
    data = plan_data(problem, plan, None)
    drawn = {s["id"]: s for s in data["routes"][0]["stops"] if s["k"] == "order"}
    assert drawn["store-0"]["late"] is False and drawn["store-1"]["late"] is True
    assert drawn["store-1"]["tw"] == [[w1.start, w1.end]] and drawn["store-1"]["p"] is not None
    assert data["geo"] and data["coords"] and data["tile_url"] is None
    loads = _summary(problem, plan)
    assert '<span class="badge bad">1</span>' in loads  # one late stop on van-1
    assert "20 / 60" in loads  # peak load against capacity
