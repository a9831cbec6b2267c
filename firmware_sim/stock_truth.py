"""Ground truth of stock: positions and cycle-count discrepancies from the scans a run published.

Feed it every executed emission (``SimRunner(..., on_publish=truth.record)``; thread-safe): it keeps
the scans a gateway must store (unique, valid, not RFID burst repeats) and replays them per
(site, location, SKU) in device-time order, the order ``protocols.stock`` defines: movements
(``inbound`` +qty, ``pick``/``outbound`` -qty) before a count of the same ``ts``, counts by
``(ts, device_id, boot_id, seq)``; a count's expected quantity is the position just before it.
A straightforward replay over the whole history, independent of the gateway's incremental book.
It holds every scan in memory: for tests and benchmarks of bounded size.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from firmware_sim.emission import Emission
from protocols import ScanMessage
from protocols.messages import COUNT_DIRECTION, STOCK_MOVES

PositionKey = tuple[str, str, str]  # (site, location, sku)
ScanKey = tuple[str, str, int]  # (device_id, boot_id, seq)


@dataclass(frozen=True, slots=True)
class ExpectedDiscrepancy:
    site: str
    location: str
    sku: str
    ts: int
    counted: int
    expected: int

    @property
    def delta(self) -> int:
        return self.counted - self.expected


class StockTruth:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scans: dict[PositionKey, list[tuple[int, int, ScanKey, str, int]]] = {}

    def record(self, e: Emission) -> None:
        """Count one executed emission (publishes of valid, first-time, non-repeat scans only)."""
        if not e.publishes or e.kind != "scan" or e.duplicate or e.malformed or e.burst_repeat:
            return
        self.add(e.site, ScanMessage.model_validate_json(e.payload))

    def add(self, site: str, msg: ScanMessage) -> None:
        b = msg.body
        is_count = int(b.direction == COUNT_DIRECTION)  # movements of the same ts sort first
        with self._lock:
            self._scans.setdefault((site, b.location, b.sku), []).append(
                (msg.ts, is_count, (msg.device_id, msg.boot_id, msg.seq), b.direction, b.qty)
            )

    def replay(self) -> tuple[dict[PositionKey, int], dict[ScanKey, ExpectedDiscrepancy]]:
        """Expected on-hand per position, and the discrepancy of every count (keyed by its scan)."""
        positions: dict[PositionKey, int] = {}
        discrepancies: dict[ScanKey, ExpectedDiscrepancy] = {}
        with self._lock:
            items = {k: sorted(v) for k, v in self._scans.items()}
        for (site, location, sku), scans in items.items():
            on_hand = 0
            for ts, is_count, key, direction, qty in scans:
                if is_count:
                    discrepancies[key] = ExpectedDiscrepancy(site, location, sku, ts, qty, on_hand)
                    on_hand = qty
                else:
                    on_hand += STOCK_MOVES[direction] * qty
            positions[(site, location, sku)] = on_hand
        return positions, discrepancies

    @property
    def scans(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._scans.values())
