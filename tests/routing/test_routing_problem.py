"""Validation errors name the offending field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from routing_cases import loc, small_problem

from cloud.routing.problem import (
    Depot,
    HaversineTravel,
    Location,
    MatrixTravel,
    Order,
    PickupDelivery,
    Problem,
    TimeWindow,
    Vehicle,
)


def _error(**overrides: object) -> str:
    with pytest.raises(ValidationError) as info:
        small_problem(**overrides)
    return str(info.value)


def test_valid_problem_round_trips_through_json() -> None:
    p = small_problem()
    assert Problem.model_validate_json(p.model_dump_json()) == p


def test_unknown_start_depot_is_named() -> None:
    v = Vehicle(id="v", start_depot="nowhere", end_depot=None)
    assert "vehicles[0].start_depot" in _error(vehicles=(v,))


def test_capacity_length_mismatch_is_named() -> None:
    v = Vehicle(id="v", start_depot="d", capacity=(1.0,))
    assert "vehicles[0].capacity" in _error(vehicles=(v,))


def test_demand_length_mismatch_is_named() -> None:
    o = Order(id="o", location=loc(1, 1), demand=(1.0, 2.0, 3.0))
    assert "orders[0].demand" in _error(orders=(o,))


def test_skill_offered_by_no_vehicle_is_named() -> None:
    o = Order(id="o", location=loc(1, 1), skills=frozenset({"hazmat"}))
    assert "orders[0].skills" in _error(orders=(o,))


def test_time_window_end_before_start_is_named() -> None:
    with pytest.raises(ValidationError) as info:
        Order(id="o", location=loc(1, 1), time_windows=(TimeWindow(start=0, end=1), {"start": 50, "end": 10}))
    text = str(info.value)
    assert "time_windows.1" in text and "before start" in text


def test_overlapping_windows_are_rejected() -> None:
    with pytest.raises(ValidationError, match="time_windows"):
        Order(
            id="o",
            location=loc(1, 1),
            time_windows=(TimeWindow(start=0, end=10), TimeWindow(start=5, end=20)),
        )


def test_duplicate_order_id_is_named() -> None:
    o = Order(id="same", location=loc(1, 1))
    assert "orders[1].id" in _error(orders=(o, o))


def test_pair_with_unknown_order_is_named() -> None:
    assert "pickup_deliveries[0].delivery" in _error(
        pickup_deliveries=(PickupDelivery(pickup="o0", delivery="missing"),)
    )


def test_negative_demand_is_named() -> None:
    with pytest.raises(ValidationError) as info:
        Order(id="o", location=loc(1, 1), demand=(-1.0,))
    assert "demand.0" in str(info.value)


def test_haversine_needs_lat_lon() -> None:
    with pytest.raises(ValidationError) as info:
        Problem(
            depots=(Depot(id="d", location=Location(x=1, y=2)),),
            vehicles=(Vehicle(id="v", start_depot="d"),),
            travel=HaversineTravel(),
        )
    assert "depots[0].location" in str(info.value)


def test_matrix_index_out_of_range_is_named() -> None:
    travel = MatrixTravel(distances_m=((0, 1), (1, 0)), durations_s=((0, 1), (1, 0)))
    with pytest.raises(ValidationError) as info:
        Problem(
            depots=(Depot(id="d", location=Location(index=0)),),
            vehicles=(Vehicle(id="v", start_depot="d"),),
            orders=(Order(id="o", location=Location(index=5)),),
            travel=travel,
        )
    assert "orders[0].location.index" in str(info.value)


def test_ragged_matrix_is_named() -> None:
    with pytest.raises(ValidationError) as info:
        MatrixTravel(distances_m=((0, 1), (1,)), durations_s=((0, 1), (1, 0)))
    assert "distances_m[1]" in str(info.value)


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        Order.model_validate({"id": "o", "location": {"x": 1, "y": 1}, "colour": "red"})
    assert "colour" in str(info.value)
