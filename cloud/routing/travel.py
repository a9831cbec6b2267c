"""Integer travel matrices shared by the engines and the checker.

Node layout: ``0..D-1`` are the depots, ``D..D+N-1`` the orders, in problem order.
Distances are integer *distance ticks* (``dist_per_unit`` ticks per km or per coordinate
unit), times integer *time ticks* (``ticks_per_second`` per second). Every engine and the
checker use these same integers, so what the solver optimises is what the checker verifies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloud.routing.problem import EuclideanTravel, HaversineTravel, Location, MatrixTravel, Problem

EARTH_RADIUS_M = 6_371_008.8


@dataclass(frozen=True)
class TravelMatrix:
    distance: np.ndarray  # int64 [n, n], distance ticks
    duration: np.ndarray  # int64 [n, n], time ticks
    dist_per_unit: int
    ticks_per_second: int
    num_depots: int

    @property
    def size(self) -> int:
        return int(self.distance.shape[0])

    def order_node(self, order_idx: int) -> int:
        return self.num_depots + order_idx

    def to_ticks(self, seconds: float) -> int:
        return round(seconds * self.ticks_per_second)

    def to_seconds(self, ticks: int) -> float:
        return ticks / self.ticks_per_second

    def to_units(self, dist_ticks: int) -> float:
        return dist_ticks / self.dist_per_unit


def _locations(problem: Problem) -> list[Location]:
    return [d.location for d in problem.depots] + [o.location for o in problem.orders]


def _haversine(locs: list[Location], travel: HaversineTravel) -> tuple[np.ndarray, np.ndarray]:
    lat = np.radians(np.array([loc.lat for loc in locs], dtype=float))
    lon = np.radians(np.array([loc.lon for loc in locs], dtype=float))
    dlat = lat[:, None] - lat[None, :]
    dlon = lon[:, None] - lon[None, :]
    a = np.sin(dlat / 2) ** 2 + np.cos(lat)[:, None] * np.cos(lat)[None, :] * np.sin(dlon / 2) ** 2
    metres = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0))) * travel.detour_factor
    dist = np.rint(metres).astype(np.int64)
    secs = np.rint(metres / (travel.speed_kmh / 3.6)).astype(np.int64)
    return dist, secs


def _euclidean(locs: list[Location], travel: EuclideanTravel) -> tuple[np.ndarray, np.ndarray, int]:
    scale = 10**travel.decimals
    x = np.array([loc.x for loc in locs], dtype=float)
    y = np.array([loc.y for loc in locs], dtype=float)
    exact = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :]) * scale
    # A tiny epsilon keeps exact integers (e.g. 5.0 stored as 4.9999999) from truncating down.
    ticks = np.floor(exact + 1e-9) if travel.rounding == "trunc" else np.floor(exact + 0.5)
    dist = ticks.astype(np.int64)
    dur = np.rint(dist / travel.speed).astype(np.int64)
    return dist, dur, scale


def build_matrix(problem: Problem) -> TravelMatrix:
    locs = _locations(problem)
    travel = problem.travel
    if isinstance(travel, HaversineTravel):
        dist, dur = _haversine(locs, travel)
        return TravelMatrix(dist, dur, 1000, 1, len(problem.depots))
    if isinstance(travel, EuclideanTravel):
        dist, dur, scale = _euclidean(locs, travel)
        return TravelMatrix(dist, dur, scale, scale, len(problem.depots))
    assert isinstance(travel, MatrixTravel)
    idx = np.array([loc.index for loc in locs], dtype=np.int64)
    full_d = np.rint(np.array(travel.distances_m, dtype=float)).astype(np.int64)
    full_t = np.rint(np.array(travel.durations_s, dtype=float)).astype(np.int64)
    return TravelMatrix(full_d[np.ix_(idx, idx)], full_t[np.ix_(idx, idx)], 1000, 1, len(problem.depots))
