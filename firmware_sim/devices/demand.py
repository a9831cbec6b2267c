"""SKU demand: weekly seasonality, intraday profile, trend, promotions and stock-outs.

The expected picks of one SKU in ``[t, t + dt)`` is
``base * weekday[w] * (1 + trend)^weeks * promo * intraday(h) * dt`` and zero during a stock-out.
Scans are Poisson draws of that intensity.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from firmware_sim.devices.base import DAY_MS, HOUR_MS, Anomaly, LocalTime, local_time

WEEKDAY_PROFILE = (1.0, 1.05, 1.1, 1.1, 1.25, 0.6, 0.35)
_INTRADAY_BUMP = 0.6


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (Knuth for small means, rounded normal for large)."""
    if lam <= 0.0:
        return 0
    if lam > 40.0:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit = math.exp(-lam)
    k = 0
    p = rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


@dataclass
class _Episode:
    start_ms: int
    end_ms: int
    factor: float


class SkuDemand:
    """Demand process of one SKU at one scanner."""

    def __init__(
        self,
        sku: str,
        rng: random.Random,
        mean_daily: float,
        trend_pct_per_week: float,
        promo_every_days: float,
        stockout_every_days: float,
        start_ms: int,
    ) -> None:
        self.sku = sku
        self._rng = rng
        self.base_daily = mean_daily * rng.lognormvariate(-0.245, 0.7)  # mean-preserving lognormal
        self.weekday = tuple(w * rng.uniform(0.9, 1.1) for w in WEEKDAY_PROFILE)
        self.trend = trend_pct_per_week / 100.0 + rng.gauss(0.0, 0.01)
        self._start_ms = start_ms
        self._promo_every = promo_every_days
        self._stockout_every = stockout_every_days
        self.promo: _Episode | None = None
        self.stockout: _Episode | None = None
        self._next_promo = start_ms + int(rng.expovariate(1.0 / promo_every_days) * DAY_MS)
        self._next_stockout = start_ms + int(rng.expovariate(1.0 / stockout_every_days) * DAY_MS)

    def force(self, kind: str, start_ms: int, end_ms: int) -> Anomaly:
        if kind == "promotion":
            self.promo = _Episode(start_ms, end_ms, self._rng.uniform(1.8, 3.0))
        else:
            self.stockout = _Episode(start_ms, end_ms, 0.0)
        return Anomaly(kind, "picks", start_ms, end_ms, {"sku": self.sku})

    def advance(self, t_ms: int) -> tuple[list[Anomaly], bool]:
        """Start/end episodes up to ``t_ms``; returns new anomalies and whether a stock-out just ended."""
        started: list[Anomaly] = []
        restocked = False
        if self.promo is not None and self.promo.end_ms <= t_ms:
            self.promo = None
        if self.stockout is not None and self.stockout.end_ms <= t_ms:
            self.stockout = None
            restocked = True
        if self._next_promo <= t_ms:
            begin = self._next_promo
            end = begin + int(self._rng.uniform(3.0, 7.0) * DAY_MS)
            if self.promo is None:
                started.append(self.force("promotion", begin, end))
            self._next_promo = end + int(self._rng.expovariate(1.0 / self._promo_every) * DAY_MS)
        if self._next_stockout <= t_ms:
            begin = self._next_stockout
            end = begin + int(self._rng.uniform(1.0, 3.0) * DAY_MS)
            if self.stockout is None:
                started.append(self.force("stock_out", begin, end))
            self._next_stockout = end + int(self._rng.expovariate(1.0 / self._stockout_every) * DAY_MS)
        return started, restocked

    def expected(self, t_ms: int, dt_ms: int, lt: LocalTime, open_hour: float, close_hour: float) -> float:
        if self.stockout is not None and self.stockout.start_ms <= t_ms:
            return 0.0
        if not open_hour <= lt.hour < close_hour:
            return 0.0
        span = close_hour - open_hour
        shape = 1.0 + _INTRADAY_BUMP * math.sin(math.pi * (lt.hour - open_hour) / span)
        norm = span * (1.0 + _INTRADAY_BUMP * 2.0 / math.pi)
        weeks = (t_ms - self._start_ms) / (7 * DAY_MS)
        level = self.base_daily * self.weekday[lt.weekday] * (1.0 + self.trend) ** weeks
        if self.promo is not None and self.promo.start_ms <= t_ms:
            level *= self.promo.factor
        return level * shape / norm * (dt_ms / HOUR_MS)


def sku_name(prefix: str, i: int) -> str:
    return f"{prefix}-{i:04d}"


__all__ = ["SkuDemand", "local_time", "poisson", "sku_name"]
