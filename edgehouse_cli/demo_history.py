"""The demo's history: 112 simulated days of picks and restocks per SKU, written before the live part.

The demand model needs about 112 days of daily demand per SKU before its forecasts mean anything
(``edge_agent.forecasting``: a SKU is forecast once it has ``forecast_min_history_days``; the model
looks back a year for its lags). Streaming 112 days of individual scans through MQTT would take the
demo far past its three minutes (the north site alone picks about 8,000 times a day), so the history
is pre-generated at high speed from the simulator's own demand model (``firmware_sim``'s
``SkuDemand``: base level, weekday profile, trend, promotions and stock-outs, opening hours), one
``pick`` scan per SKU and day carrying that day's units, plus the ``inbound`` restocks a simple
policy makes (back up to :data:`COVER_DAYS` days of demand when under :data:`REORDER_DAYS`). It goes
into each gateway's store through the agent's own ingest path (``BatchWriter``: decode, dedup, stock
book, outbox) before the agent starts, at the scanners' own locations, so the agent forecasts every
SKU at start and the stock book holds realistic positions; the cloud receives it with the live data.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Final

from edge_agent.inbound import Inbound
from edge_agent.ingest_batch import BatchWriter
from edge_agent.store import Store
from firmware_sim.config import BarcodeScannerGroup, Fleet
from firmware_sim.devices import build_model
from firmware_sim.devices.base import local_time
from firmware_sim.devices.demand import poisson
from firmware_sim.devices.scanners import BarcodeScanner
from protocols import ScanBody, ScanMessage, device_topic

HISTORY_DAYS: Final = 112
#: Restock policy of the history: when a slot holds less than REORDER_DAYS of mean demand, an inbound
#: brings it back to COVER_DAYS.
REORDER_DAYS: Final = 4.0
COVER_DAYS: Final = 12.0
_HOUR_MS: Final = 3_600_000
_DAY_MS: Final = 86_400_000
_BATCH: Final = 500
_MEAN_PICK_QTY: Final = 0.8 * 1 + 0.2 * 4  # the live scanner: 1 unit, or 2..6 one time in five


@dataclass(frozen=True, slots=True)
class History:
    gateway_id: str
    days: int
    skus: int
    scans: int


def _messages(fleet: Fleet, gateway_id: str, first_day: date, days: int) -> tuple[list[ScanMessage], int]:
    """The history's scans of one gateway's barcode scanners, in time order per scanner; and the SKU count."""
    start_ms = int(datetime.combine(first_day, datetime.min.time(), UTC).timestamp() * 1000)
    out: list[ScanMessage] = []
    skus = 0
    for spec in fleet.devices:
        if spec.gateway_id != gateway_id or not isinstance(spec.group, BarcodeScannerGroup):
            continue
        g = spec.group
        # the device's own physics generator: the same SKUs, levels and slots as its live part
        model = build_model(spec, random.Random(f"{fleet.seed}:{spec.device_id}:physics"), start_ms)
        assert isinstance(model, BarcodeScanner)
        draws = random.Random(f"{fleet.seed}:{spec.device_id}:history")
        seq = 0

        def scan(ts: int, sku: str, direction: str, qty: int) -> ScanMessage:
            nonlocal seq
            seq += 1
            body = ScanBody(code_type="barcode", sku=sku, location=model.slot(sku),  # noqa: B023
                            direction=direction, qty=qty, reader_id=spec.device_id)  # type: ignore[arg-type]  # noqa: B023
            return ScanMessage(msg_id=f"h{seq}", v=1, device_id=spec.device_id, boot_id="history",  # noqa: B023
                               seq=seq, ts=ts, body=body)

        for demand in model.skus:
            skus += 1
            mean_units = max(1.0, demand.base_daily * _MEAN_PICK_QTY)
            book = 0
            for day in range(days):
                day_ms = start_ms + day * _DAY_MS
                if book < REORDER_DAYS * mean_units:
                    qty = math.ceil(COVER_DAYS * mean_units) - book
                    out.append(scan(day_ms + 5 * _HOUR_MS, demand.sku, "inbound", qty))
                    book += qty
                picks = 0.0
                for hour in range(24):
                    t = day_ms + hour * _HOUR_MS
                    demand.advance(t)
                    picks += demand.expected(t, _HOUR_MS, local_time(t + _HOUR_MS // 2, spec.tz_offset_h),
                                             g.open_hour, g.close_hour)
                units = sum(1 if draws.random() < 0.8 else draws.randint(2, 6) for _ in range(poisson(draws, picks)))
                if units:
                    out.append(scan(day_ms + 14 * _HOUR_MS, demand.sku, "pick", units))
                    book -= units
    return out, skus


def seed_history(fleet: Fleet, gateway_id: str, data_dir: Path, today: date, days: int = HISTORY_DAYS) -> History:
    """Write ``days`` of history ending yesterday into the gateway's store (before its agent starts)."""
    site = fleet.site_of(gateway_id)
    msgs, skus = _messages(fleet, gateway_id, today - timedelta(days=days), days)
    data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(data_dir / "agent.db")
    store.open()
    conn = store.connect()
    stored = 0
    try:
        writer = BatchWriter(conn, site, 2000, 4096, gateway_id=gateway_id)
        writer.load_state()
        received = int(datetime.now(UTC).timestamp() * 1000)
        for start in range(0, len(msgs), _BATCH):
            batch = [Inbound(device_topic(site, m.device_id, "scan"), m.model_dump_json(by_alias=True).encode(), i, 0)
                     for i, m in enumerate(msgs[start:start + _BATCH])]
            stored += writer.write(batch, received).stored["scan"]
    finally:
        conn.close()
    return History(gateway_id=gateway_id, days=days, skus=skus, scans=stored)
