"""Replenishment planning: delivery orders for stores from the latest demand forecasts, then routed.

For each store and each SKU it stocks, the latest forecast synced for that site and SKU is used
(greatest ``origin``, then greatest ``created_ts``, then greatest record id, whichever gateway sent
it). The quantity to deliver is

    order_qty = max(0, ceil(sum(p90[0:lead_time_days]) - max(on_hand, 0)))

``on_hand`` is the stock synced by the site's gateways (``cloud.services.stock``: the sum of the
SKU's positions at the site) unless the request supplies it for that SKU, which overrides it; each
line says which was used (``on_hand_source``). A store replenishes the SKUs it lists in ``skus``
and ``on_hand``, or, listing none, every SKU with synced stock at its site. A SKU with neither is
left out (``no_stock``). Synced stock below zero (more picked than the book knew of) is kept in
the line as it is and counts as 0 for the order.

P90 rather than P50 is deliberate: summing the daily 90th percentiles over the lead time covers
demand in (at least) nine days out of ten, which is the safety stock. A store becomes one delivery
order whose demand, per capacity dimension, is the sum of its lines' quantities times the SKU's
unit weight or volume (1 per unit unless given); a store with nothing to deliver is not routed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Connection, Engine

from cloud.db import series_repo
from cloud.db.engine import reader
from cloud.routing.plan import Plan
from cloud.routing.problem import Depot, HaversineTravel, Location, Order, Problem, TimeWindow, Vehicle
from cloud.routing.service import Engine as SolverEngine
from cloud.schemas import payload_dict
from cloud.services.stock import SyncedStock, synced_stock
from protocols import ForecastPayload

MAX_LEAD_TIME_DAYS: Final = 28
MAX_STORES: Final = 500
MAX_SKUS_PER_STORE: Final = 1000
MAX_FLEET_SIZE: Final = 200
#: Slack for float sums of P90 values before rounding up (``11.000000000000002`` is 11 units).
ROUNDING_SLACK: Final = 1e-9

Dimension = Literal["weight", "volume"]
SiteId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
Sku = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
NonNeg = Annotated[float, Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GeoPoint(_Model):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)

    def location(self) -> Location:
        return Location(lat=self.lat, lon=self.lon)


class DepotIn(_Model):
    id: str = Field(default="depot", min_length=1, max_length=64)
    location: GeoPoint
    time_window: TimeWindow = Field(description="seconds; vehicle shifts are clipped to it")


class StoreIn(_Model):
    site: SiteId = Field(description="the `site` of the synced forecasts")
    location: GeoPoint
    time_windows: tuple[TimeWindow, ...] = Field(default=(), description="delivery windows, seconds")
    service_time: NonNeg = Field(default=0.0, description="seconds spent unloading")
    on_hand: dict[Sku, NonNeg] = Field(default_factory=dict, max_length=MAX_SKUS_PER_STORE,
                                       description="stock on hand per SKU, overriding the synced stock")
    skus: tuple[Sku, ...] = Field(default=(), max_length=MAX_SKUS_PER_STORE,
                                  description="SKUs to replenish (with those of on_hand); none listed: "
                                              "every SKU with synced stock at the site")

    @model_validator(mode="after")
    def _windows_disjoint(self) -> StoreIn:
        windows = sorted(self.time_windows, key=lambda w: w.start)
        for i in range(1, len(windows)):
            if windows[i].start <= windows[i - 1].end:
                raise ValueError("time_windows: windows overlap; merge them")
        return self


class SkuUnit(_Model):
    """Capacity one unit of a SKU takes in each dimension."""

    weight: NonNeg = 1.0
    volume: NonNeg = 1.0


class FleetIn(_Model):
    """``count`` identical vehicles ``van-1`` .. ``van-N`` based at the depot."""

    count: int = Field(ge=1, le=MAX_FLEET_SIZE)
    capacity: tuple[NonNeg, ...] = Field(min_length=1, description="one value per entry of `dimensions`")
    shift: TimeWindow | None = Field(default=None,
                                     description="default: the depot's time window; clipped to it")
    cost_per_km: NonNeg = 1.0
    cost_per_hour: NonNeg = 0.0
    fixed_cost: NonNeg = 0.0


class ReplenishmentRequest(_Model):
    depot: DepotIn
    vehicles: tuple[Vehicle, ...] | None = Field(default=None, description="as in the routing Problem")
    fleet: FleetIn | None = Field(default=None, description="or a count of identical vehicles")
    lead_time_days: int = Field(ge=1, le=MAX_LEAD_TIME_DAYS, description="days of forecast demand to cover")
    stores: tuple[StoreIn, ...] = Field(min_length=1, max_length=MAX_STORES)
    dimensions: tuple[Dimension, ...] = Field(default=("weight",), min_length=1, max_length=2)
    units: dict[Sku, SkuUnit] = Field(default_factory=dict, description="per SKU; default 1 per unit")
    travel: HaversineTravel = HaversineTravel()
    time_limit_s: float = Field(default=10.0, gt=0, le=30.0)
    engine: SolverEngine = "auto"
    seed: int = Field(default=0, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _consistent(self) -> ReplenishmentRequest:
        if len(set(self.dimensions)) != len(self.dimensions):
            raise ValueError("dimensions: listed twice")
        if (self.vehicles is None) == (self.fleet is None):
            raise ValueError("vehicles: give either vehicles or fleet, not both and not neither")
        n = len(self.dimensions)
        window = self.depot.time_window
        if self.fleet is not None:
            if len(self.fleet.capacity) != n:
                raise ValueError(f"fleet.capacity: has {len(self.fleet.capacity)} values, dimensions has {n}")
            if self.fleet.shift is not None and within(self.fleet.shift, window) is None:
                raise ValueError("fleet.shift: does not overlap the depot's time_window")
        for i, v in enumerate(self.vehicles or ()):
            if v.start_depot != self.depot.id:
                raise ValueError(f"vehicles[{i}].start_depot: unknown depot {v.start_depot!r}")
            if v.end_depot is not None and v.end_depot != self.depot.id:
                raise ValueError(f"vehicles[{i}].end_depot: unknown depot {v.end_depot!r}")
            if len(v.capacity) not in (0, n):
                raise ValueError(f"vehicles[{i}].capacity: has {len(v.capacity)} values, dimensions has {n}")
            if within(v.shift, window) is None:
                raise ValueError(f"vehicles[{i}].shift: does not overlap the depot's time_window")
        seen: set[str] = set()
        for i, store in enumerate(self.stores):
            if store.site in seen:
                raise ValueError(f"stores[{i}].site: duplicate site {store.site!r}")
            seen.add(store.site)
        return self


class ReplenishmentLine(_Model):
    sku: str
    forecast_id: str
    forecast_origin: str = Field(description="first forecast day, YYYY-MM-DD")
    forecast_created_ts: int
    p90_over_lead_time: float = Field(description="sum of the daily P90 over the first lead_time_days days")
    on_hand: float
    on_hand_source: Literal["request", "synced"] = Field(
        description="request: supplied in the request; synced: the stock synced by the site's gateways")
    stock_last_scan_ts: int | None = Field(
        default=None, description="synced: device time (ms) of the newest scan that changed the site's stock")
    order_qty: int = Field(description="max(0, ceil(p90_over_lead_time - max(on_hand, 0)))")


MissingReason = Literal["no_forecast", "horizon_shorter_than_lead_time", "no_stock"]


class MissingForecast(_Model):
    sku: str
    reason: MissingReason
    message: str


class StorePlan(_Model):
    site: str
    order_id: str | None = Field(description="the routed delivery order; None when nothing is needed")
    demand: tuple[float, ...] = Field(description="delivery size per entry of `dimensions`")
    lines: tuple[ReplenishmentLine, ...]
    missing: tuple[MissingForecast, ...] = Field(description="SKUs left out, with the reason")


class ReplenishmentPlan(_Model):
    lead_time_days: int
    dimensions: tuple[str, ...]
    stores: tuple[StorePlan, ...]
    problem: Problem = Field(description="the routing problem that was solved")
    plan: Plan = Field(description="the routes; unserved orders carry their reason")


@dataclass(frozen=True, slots=True)
class LatestForecast:
    record_id: str
    forecast: ForecastPayload


def latest_forecasts(conn: Connection, sites: Iterable[str],
                     skus: Iterable[str]) -> dict[tuple[str, str], LatestForecast]:
    """The latest forecast per (site, sku) among ``sites`` x ``skus``: greatest origin, created_ts, id."""
    site_list, sku_list = sorted(set(sites)), sorted(set(skus))
    if not site_list or not sku_list:
        return {}
    winners = series_repo.latest_forecast_ids(conn, site_list, sku_list)
    if not winners:
        return {}
    payloads = {rid: ForecastPayload.model_validate(payload_dict(payload), strict=False)
                for rid, payload in series_repo.forecast_payloads(conn, list(winners.values())).items()}
    return {key: LatestForecast(record_id=rid[1], forecast=payloads[rid]) for key, rid in winners.items()}


def order_quantity(p90_over_lead_time: float, on_hand: float) -> int:
    """``max(0, ceil(p90_over_lead_time - max(on_hand, 0)))``, ignoring float noise below :data:`ROUNDING_SLACK`."""
    return max(0, math.ceil(p90_over_lead_time - max(on_hand, 0.0) - ROUNDING_SLACK))


def store_skus(store: StoreIn, stock: dict[tuple[str, str], SyncedStock]) -> list[str]:
    """The SKUs a store replenishes: those it lists, or every SKU with synced stock at its site."""
    listed = set(store.skus) | set(store.on_hand)
    if listed:
        return sorted(listed)
    return sorted(sku for site, sku in stock if site == store.site)


def _store_plan(store: StoreIn, lead_time_days: int, found: dict[tuple[str, str], LatestForecast],
                stock: dict[tuple[str, str], SyncedStock], units: dict[str, SkuUnit],
                dimensions: Sequence[Dimension]) -> StorePlan:
    lines: list[ReplenishmentLine] = []
    missing: list[MissingForecast] = []
    demand = [0.0] * len(dimensions)
    for sku in store_skus(store, stock):
        synced = stock.get((store.site, sku))
        if sku in store.on_hand:
            on_hand, source, last_scan = store.on_hand[sku], "request", None
        elif synced is not None:
            on_hand, source, last_scan = float(synced.on_hand), "synced", synced.last_scan_ts
        else:
            missing.append(MissingForecast(sku=sku, reason="no_stock",
                                           message=f"no stock synced for site {store.site!r} and SKU {sku!r} "
                                                   "and none given in on_hand"))
            continue
        latest = found.get((store.site, sku))
        if latest is None:
            message = f"no forecast synced for site {store.site!r} and SKU {sku!r}"
            missing.append(MissingForecast(sku=sku, reason="no_forecast", message=message))
            continue
        f = latest.forecast
        if len(f.p90) < lead_time_days:
            missing.append(MissingForecast(
                sku=sku, reason="horizon_shorter_than_lead_time",
                message=f"latest forecast {f.forecast_id!r} (origin {f.origin}) covers {len(f.p90)} days, "
                        f"lead time is {lead_time_days}"))
            continue
        p90 = math.fsum(f.p90[:lead_time_days])
        qty = order_quantity(p90, on_hand)
        lines.append(ReplenishmentLine(sku=sku, forecast_id=f.forecast_id, forecast_origin=f.origin,
                                       forecast_created_ts=f.created_ts, p90_over_lead_time=p90,
                                       on_hand=on_hand, on_hand_source=source,  # type: ignore[arg-type]
                                       stock_last_scan_ts=last_scan, order_qty=qty))
        unit = units.get(sku, SkuUnit())
        for k, dim in enumerate(dimensions):
            demand[k] += qty * getattr(unit, dim)
    routed = any(line.order_qty > 0 for line in lines)
    return StorePlan(site=store.site, order_id=store.site if routed else None, demand=tuple(demand),
                     lines=tuple(lines), missing=tuple(missing))


def plan_stores(engine: Engine, request: ReplenishmentRequest) -> tuple[StorePlan, ...]:
    """Order lines of every store, from the latest forecasts and the synced stock in the store."""
    with reader(engine) as conn:
        stock = synced_stock(conn, [s.site for s in request.stores])
        skus = {sku for store in request.stores for sku in store_skus(store, stock)}
        found = latest_forecasts(conn, (s.site for s in request.stores), skus)
    return tuple(_store_plan(s, request.lead_time_days, found, stock, request.units, request.dimensions)
                 for s in request.stores)


def within(shift: TimeWindow, window: TimeWindow) -> TimeWindow | None:
    """The part of ``shift`` inside ``window``; None when they do not overlap."""
    start, end = max(shift.start, window.start), min(shift.end, window.end)
    return TimeWindow(start=start, end=end) if start <= end else None


def _clipped(shift: TimeWindow, window: TimeWindow) -> TimeWindow:
    clipped = within(shift, window)
    assert clipped is not None  # the request's validator refuses shifts outside the depot's window
    return clipped


def _vehicles(request: ReplenishmentRequest) -> tuple[Vehicle, ...]:
    """The fleet, each shift clipped to the depot's time window."""
    window = request.depot.time_window
    if request.vehicles is not None:
        return tuple(v.model_copy(update={"shift": _clipped(v.shift, window)}) for v in request.vehicles)
    fleet = request.fleet
    assert fleet is not None  # the request's validator guarantees one of the two
    shift = _clipped(fleet.shift or window, window)
    return tuple(
        Vehicle(id=f"van-{k}", start_depot=request.depot.id, end_depot=request.depot.id,
                capacity=fleet.capacity, shift=shift, cost_per_km=fleet.cost_per_km,
                cost_per_hour=fleet.cost_per_hour, fixed_cost=fleet.fixed_cost)
        for k in range(1, fleet.count + 1)
    )


def build_problem(request: ReplenishmentRequest, stores: Sequence[StorePlan]) -> Problem:
    """The routing problem: one required delivery order per store that needs something.

    Raises pydantic's ``ValidationError`` (paths of the Problem) if the problem is inconsistent.
    """
    by_site = {s.site: s for s in request.stores}
    orders = [
        Order(id=plan.order_id, location=by_site[plan.site].location.location(), demand=plan.demand,
              time_windows=by_site[plan.site].time_windows, service_time=by_site[plan.site].service_time)
        for plan in stores if plan.order_id is not None
    ]
    return Problem.model_validate({
        "name": "replenishment",
        "dimensions": request.dimensions,
        "depots": [Depot(id=request.depot.id, location=request.depot.location.location())],
        "vehicles": _vehicles(request),
        "orders": orders,
        "travel": request.travel,
    })


__all__ = [
    "MAX_LEAD_TIME_DAYS", "LatestForecast", "MissingForecast", "ReplenishmentLine", "ReplenishmentPlan",
    "ReplenishmentRequest", "StorePlan", "build_problem", "latest_forecasts", "order_quantity",
    "plan_stores", "within",
]
