"""Barcode pick scanners (demand-driven) and RFID dock portals (bursts of repeated tag reads)."""

from __future__ import annotations

import random

from firmware_sim.config import BarcodeScannerGroup, RfidPortalGroup
from firmware_sim.devices.base import (
    DAY_MS,
    HOUR_MS,
    Anomaly,
    AnomalyKind,
    AnomalySchedule,
    Sample,
    StepResult,
    is_open,
    local_time,
)
from firmware_sim.devices.demand import SkuDemand, poisson, sku_name
from protocols import ScanBody
from protocols.messages import COUNT_DIRECTION, STOCK_MOVES

SCANNER_KINDS = (AnomalyKind("promotion", "picks", 72.0, 168.0), AnomalyKind("stock_out", "picks", 24.0, 72.0))


class BarcodeScanner:
    def __init__(
        self, group: BarcodeScannerGroup, rng: random.Random, start_ms: int, tz_offset_h: float, device_id: str
    ) -> None:
        self.g = group
        self._rng = rng
        self._tz = tz_offset_h
        self._id = device_id
        self.schedule = AnomalySchedule(
            rng, SCANNER_KINDS, group.anomaly_rate_per_day, group.anomalies, start_ms, "barcode_scanner"
        )
        self.skus = [
            SkuDemand(
                sku_name(group.sku_prefix, i + 1),
                rng,
                group.mean_daily_picks,
                group.trend_pct_per_week,
                group.promo_every_days,
                group.stockout_every_days,
                start_ms,
            )
            for i in range(group.skus)
        ]
        self._slots = {d.sku: f"A{rng.randint(1, 40):02d}-{rng.randint(1, 30):02d}" for d in self.skus}
        #: Units per SKU by this scanner's own scans: what a cycle count finds, less shrinkage.
        self._book = {d.sku: 0 for d in self.skus}

    def slot(self, sku: str) -> str:
        """The location this scanner scans ``sku`` at (fixed per device and seed)."""
        return self._slots[sku]

    def step(self, t_ms: int, dt_ms: int) -> StepResult:
        anomalies: list[Anomaly] = []
        for a in self.schedule.advance(t_ms):
            anomalies.append(self._rng.choice(self.skus).force(a.kind, a.start_ms, a.end_ms))
        lt = local_time(t_ms + dt_ms // 2, self._tz)
        samples: list[Sample] = []
        for d in self.skus:
            started, restocked = d.advance(t_ms)
            anomalies.extend(started)
            if restocked:
                samples.append(self._scan(t_ms + self._rng.randrange(dt_ms), d.sku, "inbound", self._rng.randint(50, 200)))
            n = poisson(self._rng, d.expected(t_ms, dt_ms, lt, self.g.open_hour, self.g.close_hour))
            for _ in range(n):
                qty = 1 if self._rng.random() < 0.8 else self._rng.randint(2, 6)
                samples.append(self._scan(t_ms + self._rng.randrange(dt_ms), d.sku, "pick", qty))
            if self.g.count_every_days > 0 and self._rng.random() < dt_ms / (self.g.count_every_days * DAY_MS):
                # at the end of the step, after every movement of it: the shelf as it is then
                shrink = self._rng.randint(0, self.g.count_shrink_max)
                samples.append(self._scan(t_ms + dt_ms - 1, d.sku, "count", max(0, self._book[d.sku] - shrink)))
        samples.sort(key=lambda s: s.t_ms)
        return StepResult(samples, anomalies)

    def _scan(self, t: int, sku: str, direction: str, qty: int) -> Sample:
        self._book[sku] = qty if direction == COUNT_DIRECTION else self._book[sku] + STOCK_MOVES[direction] * qty
        body = ScanBody(
            code_type="barcode",
            sku=sku,
            location=self._slots[sku],
            direction=direction,  # type: ignore[arg-type]
            qty=qty,
            reader_id=self._id,
        )
        return Sample(t, scan=body)


class RfidPortal:
    """Each pass carries a few tagged cases; every tag is read 1..n times inside one short burst.

    A tag is never read again after its burst, and a burst never spans more than
    ``burst_span_ms`` (at most 1.5 s), so a gateway burst window of 2 s folds it exactly.
    """

    def __init__(
        self, group: RfidPortalGroup, rng: random.Random, start_ms: int, tz_offset_h: float, device_id: str
    ) -> None:
        self.g = group
        self._rng = rng
        self._tz = tz_offset_h
        self._id = device_id
        self._serial = rng.randrange(10**9)
        self._company = rng.randrange(1_000_000, 9_999_999)
        self.schedule = AnomalySchedule(rng, (), 0.0, (), start_ms, "rfid_portal")
        self._dock = f"dock-{rng.randint(1, 12):02d}"

    def step(self, t_ms: int, dt_ms: int) -> StepResult:
        g = self.g
        lt = local_time(t_ms, self._tz)
        rate = g.passes_per_hour * (1.0 if is_open(lt, g.open_hour, g.close_hour) else 0.05)
        samples: list[Sample] = []
        for _ in range(poisson(self._rng, rate * dt_ms / HOUR_MS)):
            begin = t_ms + self._rng.randrange(max(1, dt_ms - g.burst_span_ms))
            for _tag in range(self._rng.randint(*g.tags_per_pass)):
                self._serial += 1
                item = self._rng.randint(1, g.skus)
                tag = f"urn:epc:id:sgtin:{self._company}.{item:06d}.{self._serial}"
                body = ScanBody(
                    code_type="rfid",
                    sku=sku_name(g.sku_prefix, item),
                    location=self._dock,
                    direction=g.direction,
                    qty=self._rng.choice((6, 12, 24)),
                    reader_id=self._id,
                    tag_id=tag,
                )
                offsets = sorted(self._rng.randint(0, g.burst_span_ms) for _ in range(self._rng.randint(*g.reads_per_tag)))
                for i, off in enumerate(offsets):
                    samples.append(Sample(begin + off, scan=body, burst_repeat=i > 0))
        samples.sort(key=lambda s: s.t_ms)
        return StepResult(samples, [])
