"""Small hand-made problems shared by the routing tests (coordinates in km on a plane)."""

from __future__ import annotations

from cloud.routing.problem import (
    Break,
    Depot,
    EuclideanTravel,
    Location,
    Order,
    PickupDelivery,
    Problem,
    TimeWindow,
    Vehicle,
)

HOUR = 3600.0


def loc(x: float, y: float) -> Location:
    return Location(x=x, y=y)


def small_problem(**overrides: object) -> Problem:
    """Two vehicles, six orders; travel one coordinate unit per minute (speed 1/60)."""
    base: dict[str, object] = {
        "name": "small",
        "dimensions": ("weight", "volume"),
        "depots": (Depot(id="d", location=loc(0, 0)),),
        "vehicles": (
            Vehicle(
                id="v1",
                start_depot="d",
                end_depot="d",
                capacity=(100, 10),
                shift=TimeWindow(start=0, end=8 * HOUR),
            ),
            Vehicle(
                id="v2",
                start_depot="d",
                end_depot="d",
                capacity=(100, 10),
                shift=TimeWindow(start=0, end=8 * HOUR),
            ),
        ),
        "orders": tuple(
            Order(id=f"o{i}", location=loc(x, y), demand=(30, 2), service_time=300)
            for i, (x, y) in enumerate([(10, 0), (20, 0), (0, 10), (0, 20), (-10, 0), (0, -10)])
        ),
        "travel": EuclideanTravel(speed=1 / 60, decimals=0, rounding="round"),
    }
    base.update(overrides)
    return Problem(**base)  # type: ignore[arg-type]


def rich_problem() -> Problem:
    """Breaks, skills, a pickup-delivery pair, two windows on one order and an open route."""
    vehicles = (
        Vehicle(
            id="cold",
            start_depot="d",
            end_depot="d",
            capacity=(100, 10),
            skills=frozenset({"refrigerated"}),
            shift=TimeWindow(start=0, end=8 * HOUR),
            breaks=(Break(window=TimeWindow(start=HOUR, end=2 * HOUR), duration=1800),),
        ),
        Vehicle(
            id="open",
            start_depot="d",
            end_depot=None,
            capacity=(100, 10),
            shift=TimeWindow(start=0, end=8 * HOUR),
            cost_per_hour=10.0,
            fixed_cost=5.0,
        ),
    )
    orders = (
        Order(
            id="frozen",
            location=loc(10, 5),
            demand=(10, 1),
            service_time=120,
            skills=frozenset({"refrigerated"}),
        ),
        Order(
            id="two_windows",
            location=loc(-10, 5),
            demand=(10, 1),
            service_time=120,
            time_windows=(TimeWindow(start=600, end=900), TimeWindow(start=3 * HOUR, end=4 * HOUR)),
        ),
        Order(id="pick", location=loc(5, -5), demand=(20, 2), service_time=60),
        Order(id="drop", location=loc(15, -5), demand=(20, 2), service_time=60),
        Order(
            id="late",
            location=loc(20, 20),
            demand=(5, 1),
            service_time=60,
            time_windows=(TimeWindow(start=2 * HOUR, end=5 * HOUR),),
        ),
    )
    return Problem(
        name="rich",
        dimensions=("weight", "volume"),
        depots=(Depot(id="d", location=loc(0, 0)),),
        vehicles=vehicles,
        orders=orders,
        pickup_deliveries=(PickupDelivery(pickup="pick", delivery="drop"),),
        travel=EuclideanTravel(speed=1 / 60, decimals=0, rounding="round"),
    )
