"""Routing problem model: the validated input of every engine.

Units: times are seconds from an arbitrary reference (e.g. midnight of the planning day),
distances are kilometres for ``haversine``/``matrix`` travel (matrix distances are given in
metres) and coordinate units for ``euclidean`` travel. Costs are in one currency unit.

Every validation error names the offending field with its path, e.g.
``orders[3].time_windows[0]: end (100) is before start (200)``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NonNeg = Annotated[float, Field(ge=0)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Location(_Frozen):
    """A point: ``lat``/``lon`` (haversine), ``x``/``y`` (euclidean) or ``index`` (matrix)."""

    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    x: float | None = None
    y: float | None = None
    index: int | None = Field(default=None, ge=0)


class TimeWindow(_Frozen):
    start: NonNeg
    end: NonNeg

    @model_validator(mode="after")
    def _ordered(self) -> TimeWindow:
        if self.end < self.start:
            raise ValueError(f"end ({self.end:g}) is before start ({self.start:g})")
        return self


class Depot(_Frozen):
    id: str = Field(min_length=1)
    location: Location


class Break(_Frozen):
    """A driver break of ``duration`` seconds that must start within ``window``."""

    window: TimeWindow
    duration: NonNeg


class Vehicle(_Frozen):
    id: str = Field(min_length=1)
    start_depot: str
    end_depot: str | None = Field(default=None, description="None: open route, ends at its last stop")
    capacity: tuple[NonNeg, ...] = ()
    shift: TimeWindow = TimeWindow(start=0, end=86_400)
    fixed_cost: NonNeg = 0.0
    cost_per_km: NonNeg = 1.0
    cost_per_hour: NonNeg = 0.0
    max_duration: NonNeg | None = None
    max_distance: NonNeg | None = None
    skills: frozenset[str] = frozenset()
    breaks: tuple[Break, ...] = ()


class Order(_Frozen):
    id: str = Field(min_length=1)
    location: Location
    demand: tuple[NonNeg, ...] = ()
    time_windows: tuple[TimeWindow, ...] = ()
    service_time: NonNeg = 0.0
    skills: frozenset[str] = frozenset()
    priority: int = Field(default=1, ge=1, le=100, description="required orders: higher is dropped last")
    penalty: NonNeg | None = Field(default=None, description="None: required; else cost of leaving it out")

    @model_validator(mode="after")
    def _windows_disjoint(self) -> Order:
        windows = sorted(self.time_windows, key=lambda w: w.start)
        for i in range(1, len(windows)):
            if windows[i].start <= windows[i - 1].end:
                raise ValueError("time_windows: windows overlap; merge them")
        return self


class PickupDelivery(_Frozen):
    """``pickup`` is loaded at its location and unloaded at ``delivery`` by the same vehicle."""

    pickup: str
    delivery: str


class HaversineTravel(_Frozen):
    kind: Literal["haversine"] = "haversine"
    speed_kmh: float = Field(default=40.0, gt=0)
    detour_factor: float = Field(default=1.3, ge=1.0, description="road distance / great-circle distance")


class EuclideanTravel(_Frozen):
    """Benchmark travel: distance in coordinate units, one unit per ``1/speed`` seconds.

    ``decimals``/``rounding`` fix the integer convention, e.g. DIMACS Solomon (1, trunc) or
    CVRPLIB X (0, round)."""

    kind: Literal["euclidean"] = "euclidean"
    speed: float = Field(default=1.0, gt=0)
    decimals: int = Field(default=1, ge=0, le=4)
    rounding: Literal["trunc", "round"] = "trunc"


class MatrixTravel(_Frozen):
    """Supplied square matrices indexed by ``Location.index``: metres and seconds."""

    kind: Literal["matrix"] = "matrix"
    distances_m: tuple[tuple[NonNeg, ...], ...]
    durations_s: tuple[tuple[NonNeg, ...], ...]

    @model_validator(mode="after")
    def _square(self) -> MatrixTravel:
        n = len(self.distances_m)
        for name, matrix in (("distances_m", self.distances_m), ("durations_s", self.durations_s)):
            if len(matrix) != n:
                raise ValueError(f"{name}: has {len(matrix)} rows, distances_m has {n}")
            for i, row in enumerate(matrix):
                if len(row) != n:
                    raise ValueError(f"{name}[{i}]: has {len(row)} columns, expected {n}")
        return self


Travel = Annotated[HaversineTravel | EuclideanTravel | MatrixTravel, Field(discriminator="kind")]


class Problem(_Frozen):
    name: str = "problem"
    dimensions: tuple[str, ...] = ("weight",)
    depots: tuple[Depot, ...] = Field(min_length=1)
    vehicles: tuple[Vehicle, ...] = Field(min_length=1)
    orders: tuple[Order, ...] = ()
    pickup_deliveries: tuple[PickupDelivery, ...] = ()
    travel: Travel = HaversineTravel()

    @model_validator(mode="after")
    def _consistent(self) -> Problem:
        _check_ids(self)
        _check_locations(self)
        _check_vectors(self)
        _check_skills(self)
        _check_pairs(self)
        return self

    def order_index(self) -> dict[str, int]:
        return {o.id: i for i, o in enumerate(self.orders)}

    def depot_index(self) -> dict[str, int]:
        return {d.id: i for i, d in enumerate(self.depots)}


def _check_ids(p: Problem) -> None:
    for field, items in (("depots", p.depots), ("vehicles", p.vehicles), ("orders", p.orders)):
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.id in seen:
                raise ValueError(f"{field}[{i}].id: duplicate id {item.id!r}")
            seen.add(item.id)
    depots = {d.id for d in p.depots}
    for i, v in enumerate(p.vehicles):
        if v.start_depot not in depots:
            raise ValueError(f"vehicles[{i}].start_depot: unknown depot {v.start_depot!r}")
        if v.end_depot is not None and v.end_depot not in depots:
            raise ValueError(f"vehicles[{i}].end_depot: unknown depot {v.end_depot!r}")


def _check_location(path: str, loc: Location, p: Problem) -> None:
    kind = p.travel.kind
    if kind == "haversine" and (loc.lat is None or loc.lon is None):
        raise ValueError(f"{path}: lat and lon are required for travel.kind='haversine'")
    if kind == "euclidean" and (loc.x is None or loc.y is None):
        raise ValueError(f"{path}: x and y are required for travel.kind='euclidean'")
    if kind == "matrix":
        assert isinstance(p.travel, MatrixTravel)
        size = len(p.travel.distances_m)
        if loc.index is None:
            raise ValueError(f"{path}: index is required for travel.kind='matrix'")
        if loc.index >= size:
            raise ValueError(f"{path}.index: {loc.index} is outside the {size}x{size} travel matrix")


def _check_locations(p: Problem) -> None:
    for i, d in enumerate(p.depots):
        _check_location(f"depots[{i}].location", d.location, p)
    for i, o in enumerate(p.orders):
        _check_location(f"orders[{i}].location", o.location, p)


def _check_vectors(p: Problem) -> None:
    n = len(p.dimensions)
    for i, v in enumerate(p.vehicles):
        if len(v.capacity) not in (0, n):
            raise ValueError(f"vehicles[{i}].capacity: has {len(v.capacity)} values, dimensions has {n}")
        for k, b in enumerate(v.breaks):
            if b.window.start < v.shift.start or b.window.start > v.shift.end:
                raise ValueError(f"vehicles[{i}].breaks[{k}].window: starts outside the shift")
    for i, o in enumerate(p.orders):
        if len(o.demand) not in (0, n):
            raise ValueError(f"orders[{i}].demand: has {len(o.demand)} values, dimensions has {n}")


def _check_skills(p: Problem) -> None:
    offered: set[str] = set()
    for v in p.vehicles:
        offered |= v.skills
    for i, o in enumerate(p.orders):
        missing = sorted(o.skills - offered)
        if missing:
            raise ValueError(f"orders[{i}].skills: {missing} offered by no vehicle")


def _check_pairs(p: Problem) -> None:
    index = p.order_index()
    used: set[str] = set()
    for i, pair in enumerate(p.pickup_deliveries):
        for role in ("pickup", "delivery"):
            oid = getattr(pair, role)
            if oid not in index:
                raise ValueError(f"pickup_deliveries[{i}].{role}: unknown order {oid!r}")
            if oid in used:
                raise ValueError(f"pickup_deliveries[{i}].{role}: order {oid!r} is in two pairs")
            used.add(oid)
        pick, drop = p.orders[index[pair.pickup]], p.orders[index[pair.delivery]]
        if tuple(pick.demand) != tuple(drop.demand):
            raise ValueError(f"pickup_deliveries[{i}]: pickup and delivery demand differ")
        if (pick.penalty is None) != (drop.penalty is None):
            raise ValueError(f"pickup_deliveries[{i}]: both orders must be required or both optional")
