"""Ground truth: every injected anomaly and fault as JSONL, and exact counts in a summary line.

Counts follow what was actually published, so a run stopped at any moment still has an exact
summary. ``expected_stored.scan`` is unique valid scans minus RFID burst repeats (the gateway
folds repeat reads of one tag by one reader inside its burst window).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import IO

from pydantic import BaseModel, ConfigDict

from firmware_sim.emission import Emission, TruthEvent


class KindCounts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    telemetry: int = 0
    scan: int = 0
    status: int = 0


class StoredCounts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    telemetry: int = 0
    scan: int = 0


class Summary(BaseModel):
    """The last ground-truth line."""

    model_config = ConfigDict(extra="forbid")

    type: str = "summary"
    published: int = 0
    unique: KindCounts = KindCounts()
    duplicates: int = 0
    malformed: int = 0
    rfid_burst_repeats: int = 0
    wills: int = 0
    faults: dict[str, int] = {}
    anomalies: int = 0
    expected_stored: StoredCounts = StoredCounts()


class TruthLedger:
    """Counts one stream's executed emissions and forwards their events to a sink (thread-confined)."""

    def __init__(self, sink: TruthWriter | None = None) -> None:
        self._sink = sink
        self.published = 0
        self.by_kind: Counter[str] = Counter()
        self.unique: Counter[str] = Counter()
        self.duplicates = 0
        self.malformed = 0
        self.burst_repeats = 0
        self.wills = 0
        self.faults: Counter[str] = Counter()
        self.anomalies = 0

    def record(self, e: Emission) -> None:
        if e.publishes:
            self.published += 1
            self.by_kind[e.kind or "status"] += 1
            if e.malformed:
                self.malformed += 1
            elif e.duplicate:
                self.duplicates += 1
            elif e.kind is not None:
                self.unique[e.kind] += 1
                if e.burst_repeat:
                    self.burst_repeats += 1
        elif e.action == "disconnect":
            self.wills += 1
        if e.events:
            for ev in e.events:
                if ev.get("type") == "fault":
                    self.faults[str(ev["fault"])] += 1
                elif ev.get("type") == "anomaly":
                    self.anomalies += 1
            if self._sink is not None:
                self._sink.write_events(e.events)

    def summary(self) -> Summary:
        return summarize([self])


def summarize(ledgers: list[TruthLedger]) -> Summary:
    unique: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    for led in ledgers:
        unique.update(led.unique)
        faults.update(led.faults)
    repeats = sum(led.burst_repeats for led in ledgers)
    return Summary(
        published=sum(led.published for led in ledgers),
        unique=KindCounts(telemetry=unique["telemetry"], scan=unique["scan"], status=unique["status"]),
        duplicates=sum(led.duplicates for led in ledgers),
        malformed=sum(led.malformed for led in ledgers),
        rfid_burst_repeats=repeats,
        wills=sum(led.wills for led in ledgers),
        faults=dict(sorted(faults.items())),
        anomalies=sum(led.anomalies for led in ledgers),
        expected_stored=StoredCounts(telemetry=unique["telemetry"], scan=unique["scan"] - repeats),
    )


class TruthWriter:
    """Appends JSON lines to a file; safe to share between publisher threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] | None = self.path.open("w", encoding="utf-8")
        self._lock = threading.Lock()

    def write_events(self, events: tuple[TruthEvent, ...]) -> None:
        lines = "".join(json.dumps(ev, separators=(",", ":")) + "\n" for ev in events)
        with self._lock:
            if self._fh is not None:
                self._fh.write(lines)

    def close(self, summary: Summary) -> None:
        with self._lock:
            if self._fh is None:
                return
            self._fh.write(summary.model_dump_json() + "\n")
            self._fh.close()
            self._fh = None


def read_truth(path: str | Path) -> tuple[list[TruthEvent], Summary]:
    """Read a ground-truth file back: the events and the summary line."""
    events: list[TruthEvent] = []
    summary: Summary | None = None
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        doc = json.loads(line)
        if doc.get("type") == "summary":
            summary = Summary.model_validate(doc)
        else:
            events.append(doc)
    if summary is None:
        raise ValueError(f"{path}: no summary line (the run did not finish)")
    return events, summary
