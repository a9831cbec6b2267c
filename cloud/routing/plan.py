"""The solver's answer: per-vehicle schedules, totals, unserved orders and solver status."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PlanStatus = Literal["feasible", "partial", "no_solution"]
StopKind = Literal["start", "order", "break", "end"]
UnservedReason = Literal[
    "no_vehicle_with_skills",
    "exceeds_capacity",
    "time_window_unreachable",
    "exceeds_route_limits",
    "penalty_cheaper_than_serving",
    "no_room_in_fleet",
    "time_limit_no_solution",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Stop(_Frozen):
    kind: StopKind
    order_id: str | None = None
    arrival: float = Field(description="seconds; ready at the location (after travel and breaks)")
    wait: float = 0.0
    start: float = Field(description="seconds; service (or break) start")
    departure: float
    load: tuple[float, ...] = Field(description="on board after this stop, one value per dimension")
    distance_from_previous: float = 0.0


class Route(_Frozen):
    vehicle_id: str
    stops: tuple[Stop, ...]
    distance: float = Field(description="km, or coordinate units for euclidean travel")
    duration: float = Field(description="seconds from leaving the start to the end of the route")
    cost: float


class Unserved(_Frozen):
    order_id: str
    reason: UnservedReason


class Plan(_Frozen):
    problem: str
    status: PlanStatus
    engine: str
    routes: tuple[Route, ...] = ()
    unserved: tuple[Unserved, ...] = ()
    total_distance: float = 0.0
    total_duration: float = 0.0
    route_cost: float = Field(default=0.0, description="fixed + distance + time costs of the routes")
    penalty_cost: float = Field(default=0.0, description="penalties of unserved optional orders")
    total_cost: float = 0.0
    vehicles_used: int = 0
    solve_time_s: float = 0.0
    time_limit_s: float = 0.0
    seed: int = 0
