"""One ingest batch: decode, dead-letter, de-duplicate, filter RFID bursts, store + outbox.

Everything a batch accepts goes into its table and into the outbox in the same transaction,
so a record is either stored and queued for the cloud or not stored at all. The caller
acknowledges the batch's MQTT messages only after :meth:`BatchWriter.write` returned.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from edge_agent.inbound import Inbound
from edge_agent.rfid import RfidBurstFilter
from edge_agent.store.db import padded, transaction
from edge_agent.store.stock import StockBook, StockChanges
from edge_agent.store.stock_output import Publication, StockOutput
from edge_agent.store.telemetry import readings_column
from protocols import (
    DEVICE_RECORD_KINDS,
    RECORD_KIND_OF_TOPIC,
    DecodeError,
    DeviceStatusRecord,
    DeviceTopic,
    ScanMessage,
    ScanRecord,
    StatusMessage,
    TelemetryMessage,
    TelemetryRecord,
    TopicError,
    decode_device_message,
    parse_topic,
    record_id,
)

Key = tuple[str, str, int]
DeviceMessage = TelemetryMessage | ScanMessage | StatusMessage

#: The table holding each device record kind's history.
TABLE: Final = {"telemetry": "telemetry", "scan": "scans", "device_status": "device_status_history"}
_TOPIC_CACHE_MAX: Final = 20_000
_LOOKUP_CHUNK: Final = 1000

_INSERT_TELEMETRY: Final = (
    "INSERT OR IGNORE INTO telemetry (device_id, boot_id, seq, ts, received_ts, msg_id, readings) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_SCAN: Final = (
    "INSERT OR IGNORE INTO scans (device_id, boot_id, seq, ts, received_ts, msg_id, code_type, sku, "
    "location, direction, qty, reader_id, tag_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_BURST_REPEAT: Final = (
    "INSERT OR IGNORE INTO rfid_burst_repeats (device_id, boot_id, seq, ts, received_ts, reader_id, tag_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_STATUS: Final = (
    "INSERT OR IGNORE INTO device_status_history (device_id, boot_id, seq, ts, received_ts, msg_id, "
    "state, fw_version, uptime_s, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_LATEST: Final = (
    "INSERT INTO device_status (device_id, boot_id, seq, ts, received_ts, state, fw_version, uptime_s, reason) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET "
    "boot_id = excluded.boot_id, seq = excluded.seq, ts = excluded.ts, received_ts = excluded.received_ts, "
    "state = excluded.state, fw_version = excluded.fw_version, uptime_s = excluded.uptime_s, "
    "reason = excluded.reason WHERE excluded.ts >= device_status.ts"
)
_INSERT_OUTBOX: Final = "INSERT OR IGNORE INTO outbox (id, kind, created_ts, payload) VALUES (?, ?, ?, ?)"
_INSERT_DEAD: Final = (
    "INSERT INTO dead_letters (received_ts, topic, reason, field, payload, payload_bytes) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


@dataclass(slots=True)
class BatchResult:
    messages: int = 0
    stored: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DEVICE_RECORD_KINDS, 0))
    duplicates: int = 0
    rfid_burst_dropped: int = 0
    dead_letters: int = 0
    #: What the batch's scans changed in the stock book (committed with them).
    stock: StockChanges = field(default_factory=StockChanges)
    #: Stock positions, discrepancies and stock-out alerts to publish on the gateway's topics once committed.
    published: list[Publication] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    reason: str
    field: str | None
    payload: bytes


class BatchWriter:
    """Writes batches on one connection (the ingest thread's)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        site: str,
        rfid_burst_window_ms: int,
        dead_letter_max_bytes: int,
        gateway_id: str | None = None,
    ) -> None:
        """With a ``gateway_id`` the stock changes are synced and published (``StockOutput``); without
        one only the book is kept (tests of the book and the RFID filter)."""
        self._conn = conn
        self._site = site
        self._dead_max = dead_letter_max_bytes
        self.rfid = RfidBurstFilter(rfid_burst_window_ms)
        self.stock = StockBook(conn, site)
        self.stock_output = None if gateway_id is None else StockOutput(conn, self.stock, site, gateway_id)
        self._topics: dict[str, DeviceTopic | str] = {}

    def load_state(self) -> None:
        self.rfid.load(self._conn)

    def _topic(self, topic: str) -> DeviceTopic | str:
        """The parsed device topic, or the reason it is not one (cached: topics repeat)."""
        cached = self._topics.get(topic)
        if cached is not None:
            return cached
        try:
            parsed = parse_topic(topic)
            if not isinstance(parsed, DeviceTopic):
                result: DeviceTopic | str = f"{topic!r} is not a device topic"
            elif parsed.site != self._site:
                result = f"site {parsed.site!r} is not this gateway's site {self._site!r}"
            else:
                result = parsed
        except TopicError as exc:
            result = str(exc)
        if len(self._topics) >= _TOPIC_CACHE_MAX:
            self._topics.clear()
        self._topics[topic] = result
        return result

    def classify(
        self, batch: Sequence[Inbound], result: BatchResult
    ) -> tuple[dict[str, dict[Key, DeviceMessage]], list[DeadLetter]]:
        """Decode a batch: accepted messages per record kind (first of each key wins) and dead letters."""
        accepted: dict[str, dict[Key, DeviceMessage]] = {kind: {} for kind in DEVICE_RECORD_KINDS}
        dead: list[DeadLetter] = []
        for m in batch:
            topic = self._topic(m.topic)
            if isinstance(topic, str):
                dead.append(DeadLetter(m.topic, topic, "topic", m.payload))
                continue
            try:
                msg = decode_device_message(m.payload, topic.kind.value)
            except DecodeError as exc:
                dead.append(DeadLetter(m.topic, exc.reason, exc.field, m.payload))
                continue
            except Exception as exc:  # noqa: BLE001 (bad input must never stop ingest)
                dead.append(DeadLetter(m.topic, f"undecodable: {type(exc).__name__}: {exc}", None, m.payload))
                continue
            if msg.device_id != topic.device_id:
                reason = f"device_id {msg.device_id!r} does not match the topic's {topic.device_id!r}"
                dead.append(DeadLetter(m.topic, reason, "device_id", m.payload))
                continue
            bucket = accepted[RECORD_KIND_OF_TOPIC[topic.kind.value]]
            key = (msg.device_id, msg.boot_id, msg.seq)
            if key in bucket:
                result.duplicates += 1
            else:
                bucket[key] = msg
        return accepted, dead

    def _existing(self, table: str, keys: Sequence[Key]) -> set[Key]:
        found: set[Key] = set()
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = padded(keys[start : start + _LOOKUP_CHUNK])
            values = ",".join(["(?,?,?)"] * len(chunk))
            params = [part for key in chunk for part in key]
            rows = self._conn.execute(
                f"SELECT v.column1, v.column2, v.column3 FROM (VALUES {values}) v JOIN {table} t "
                "ON t.device_id = v.column1 AND t.boot_id = v.column2 AND t.seq = v.column3",
                params,
            )
            found.update((d, b, int(s)) for d, b, s in rows)
        return found

    def write(
        self,
        batch: Sequence[Inbound],
        received_ts: int,
        also: Callable[[sqlite3.Connection], None] | None = None,
    ) -> BatchResult:
        """Decode and store one batch in one transaction; return what happened to its messages.

        ``also`` runs inside that transaction after the batch is written (a dead-letter replay
        deletes the letters it stored there, so a letter is either replayed or kept, never both).
        """
        result = BatchResult(messages=len(batch))
        accepted, dead = self.classify(batch, result)
        pending_rfid: dict[tuple[str, str], int] = {}
        with transaction(self._conn):
            outbox: list[tuple[str, str, int, str]] = []
            for kind, bucket in accepted.items():
                if not bucket:
                    continue
                existing = self._existing(TABLE[kind], list(bucket))
                if kind == "scan":  # a copy of a dropped burst repeat is a duplicate too
                    existing |= self._existing("rfid_burst_repeats", [k for k in bucket if k not in existing])
                result.duplicates += len(existing)
                fresh = [msg for key, msg in bucket.items() if key not in existing]
                if kind == "scan":
                    fresh = self._drop_rfid_bursts(fresh, pending_rfid, result, received_ts)
                result.stored[kind] = self._insert(kind, fresh, received_ts, outbox)
                if kind == "scan" and fresh:
                    scans = [m for m in fresh if isinstance(m, ScanMessage)]
                    result.stock = self.stock.apply(scans, received_ts)
                    if self.stock_output is not None:
                        result.published = self.stock_output.write(result.stock, received_ts, outbox)
            if outbox:
                self._conn.executemany(_INSERT_OUTBOX, outbox)
            if dead:
                self._conn.executemany(_INSERT_DEAD, [self._dead_row(d, received_ts) for d in dead])
                result.dead_letters = len(dead)
            if also is not None:
                also(self._conn)
        self.rfid.commit(pending_rfid)
        return result

    def write_dead_letter(self, inbound: Inbound, reason: str, received_ts: int) -> None:
        """Store one message as a dead letter on its own (when storing it normally failed)."""
        with transaction(self._conn):
            dead = DeadLetter(inbound.topic, reason, None, inbound.payload)
            self._conn.execute(_INSERT_DEAD, self._dead_row(dead, received_ts))

    def _drop_rfid_bursts(
        self,
        scans: list[DeviceMessage],
        pending: dict[tuple[str, str], int],
        result: BatchResult,
        received_ts: int,
    ) -> list[DeviceMessage]:
        kept: list[DeviceMessage] = []
        repeats: list[tuple[str, str, int, int, int, str, str]] = []
        for msg in scans:
            if not isinstance(msg, ScanMessage) or msg.body.code_type != "rfid" or msg.body.tag_id is None:
                kept.append(msg)
                continue
            key = (msg.body.reader_id, msg.body.tag_id)
            if self.rfid.is_burst(key, msg.ts, pending):
                result.rfid_burst_dropped += 1
                repeats.append((msg.device_id, msg.boot_id, msg.seq, msg.ts, received_ts, *key))
                continue
            pending[key] = max(msg.ts, pending.get(key, msg.ts))
            kept.append(msg)
        if repeats:
            self._conn.executemany(_INSERT_BURST_REPEAT, repeats)
        return kept

    def _insert(
        self, kind: str, msgs: list[DeviceMessage], received_ts: int, outbox: list[tuple[str, str, int, str]]
    ) -> int:
        if not msgs:
            return 0
        if kind == "telemetry":
            rows = []
            for m in msgs:
                assert isinstance(m, TelemetryMessage)
                readings = readings_column(m.body.readings)
                rows.append((m.device_id, m.boot_id, m.seq, m.ts, received_ts, m.msg_id, readings))
                rid = record_id(kind, m.device_id, m.boot_id, m.seq)
                rec = TelemetryRecord(id=rid, received_ts=received_ts, msg=m)
                outbox.append((rid, kind, received_ts, rec.model_dump_json(by_alias=True)))
            self._conn.executemany(_INSERT_TELEMETRY, rows)
        elif kind == "scan":
            rows_s = []
            for m in msgs:
                assert isinstance(m, ScanMessage)
                b = m.body
                rows_s.append(
                    (
                        m.device_id,
                        m.boot_id,
                        m.seq,
                        m.ts,
                        received_ts,
                        m.msg_id,
                        b.code_type,
                        b.sku,
                        b.location,
                        b.direction,
                        b.qty,
                        b.reader_id,
                        b.tag_id,
                    )
                )
                rid = record_id(kind, m.device_id, m.boot_id, m.seq)
                srec = ScanRecord(id=rid, received_ts=received_ts, msg=m)
                outbox.append((rid, kind, received_ts, srec.model_dump_json(by_alias=True)))
            self._conn.executemany(_INSERT_SCAN, rows_s)
        else:
            history, latest = [], []
            for m in msgs:
                assert isinstance(m, StatusMessage)
                b = m.body
                history.append(
                    (
                        m.device_id,
                        m.boot_id,
                        m.seq,
                        m.ts,
                        received_ts,
                        m.msg_id,
                        b.state,
                        b.fw_version,
                        b.uptime_s,
                        b.reason,
                    )
                )
                latest.append(
                    (
                        m.device_id,
                        m.boot_id,
                        m.seq,
                        m.ts,
                        received_ts,
                        b.state,
                        b.fw_version,
                        b.uptime_s,
                        b.reason,
                    )
                )
                rid = record_id(kind, m.device_id, m.boot_id, m.seq)
                drec = DeviceStatusRecord(id=rid, received_ts=received_ts, msg=m)
                outbox.append((rid, kind, received_ts, drec.model_dump_json(by_alias=True)))
            self._conn.executemany(_INSERT_STATUS, history)
            self._conn.executemany(_UPSERT_LATEST, latest)
        return len(msgs)

    def _dead_row(self, d: DeadLetter, received_ts: int) -> tuple[int, str, str, str | None, bytes, int]:
        return (received_ts, d.topic, d.reason[:1000], d.field, d.payload[: self._dead_max], len(d.payload))
