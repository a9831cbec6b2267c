"""Dead letters: list, show, and replay them through the same decoding and dedup as live messages.

After a device's firmware is fixed (or the agent learned a new message version), its dead
letters may decode. :func:`replay` hands them, a chunk at a time, to the ingest's own
:class:`~edge_agent.ingest_batch.BatchWriter`: decode, dedup on ``(device_id, boot_id, seq)``,
RFID burst filter, row + outbox record, and in that same transaction the letters that decoded
are deleted. A letter is therefore stored (and synced, through the outbox) exactly once, or
kept with its reason; a replay that is interrupted or run twice, even beside a running agent,
stores nothing twice. Letters whose payload was truncated (``ingest.dead_letter_max_bytes``)
cannot be replayed and stay.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import sqlite_utils

from edge_agent.clock import now_ms
from edge_agent.config import AgentConfig
from edge_agent.inbound import Inbound
from edge_agent.ingest_batch import BatchResult, BatchWriter
from edge_agent.store import Store
from edge_agent.tools.database import ToolError, open_database
from protocols import DeviceTopic, TopicError, parse_topic
from protocols.untrusted import clip

#: Letters per replay transaction: short, so the agent's ingest never waits long for the lock.
REPLAY_CHUNK: Final = 200


@dataclass(frozen=True, slots=True)
class Letter:
    id: int
    received_ts: int
    topic: str
    reason: str
    field: str | None
    payload: bytes
    payload_bytes: int

    @property
    def truncated(self) -> bool:
        return self.payload_bytes > len(self.payload)

    @property
    def device_id(self) -> str | None:
        try:
            topic = parse_topic(self.topic)
        except TopicError:
            return None
        return topic.device_id if isinstance(topic, DeviceTopic) else None

    @classmethod
    def of(cls, row: dict[str, Any]) -> Letter:
        return cls(
            int(row["id"]),
            int(row["received_ts"]),
            str(row["topic"]),
            str(row["reason"]),
            row["field"],
            bytes(row["payload"]),
            int(row["payload_bytes"]),
        )


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters a command applies to (every given filter must hold)."""

    ids: tuple[int, ...] = ()
    since: int | None = None
    until: int | None = None
    device: str | None = None
    topic_prefix: str | None = None
    reason_contains: str | None = None

    def where(self, after_id: int = 0) -> tuple[str, list[Any]]:
        clauses, args = ["id > ?"], [after_id]
        if self.ids:
            clauses.append(f"id IN ({','.join('?' * len(self.ids))})")
            args.extend(self.ids)
        if self.since is not None:
            clauses.append("received_ts >= ?")
            args.append(self.since)
        if self.until is not None:
            clauses.append("received_ts < ?")
            args.append(self.until)
        if self.device is not None:  # a level of the topic is the device id
            clauses.append("'/' || topic || '/' LIKE ? ESCAPE '\\'")
            args.append(f"%/{_like(self.device)}/%")
        if self.topic_prefix is not None:
            clauses.append("substr(topic, 1, ?) = ?")
            args.extend([len(self.topic_prefix), self.topic_prefix])
        if self.reason_contains is not None:
            clauses.append("instr(reason, ?) > 0")
            args.append(self.reason_contains)
        return " AND ".join(clauses), args


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def select(db: sqlite_utils.Database, selection: Selection, limit: int | None = None) -> Iterator[Letter]:
    """The selected letters, oldest first."""
    where, args = selection.where()
    for row in db.table("dead_letters").rows_where(where, args, order_by="id", limit=limit):
        yield Letter.of(row)


def count(db: sqlite_utils.Database, selection: Selection) -> int:
    where, args = selection.where()
    return int(db.execute(f"SELECT COUNT(*) FROM dead_letters WHERE {where}", args).fetchone()[0])


def get(db: sqlite_utils.Database, letter_id: int) -> Letter:
    rows = list(db.table("dead_letters").rows_where("id = ?", [letter_id]))
    if not rows:
        raise ToolError(f"no dead letter {letter_id}")
    return Letter.of(rows[0])


def verdict(writer: BatchWriter, letter: Letter) -> str | None:
    """None when ``letter`` decodes now (as live ingest would decode it), else why not."""
    if letter.truncated:
        return (
            f"payload truncated to {len(letter.payload)} of {letter.payload_bytes} bytes "
            "(ingest.dead_letter_max_bytes): cannot be replayed"
        )
    _, dead = writer.classify([_inbound(letter)], BatchResult())
    return dead[0].reason if dead else None


def _inbound(letter: Letter) -> Inbound:
    return Inbound(letter.topic, letter.payload, letter.id, 0)


def writer_for(conn: sqlite3.Connection, config: AgentConfig) -> BatchWriter:
    """The ingest's batch writer as the agent configures it, with its RFID state loaded."""
    writer = BatchWriter(
        conn,
        config.site,
        config.ingest.rfid_burst_window_ms,
        config.ingest.dead_letter_max_bytes,
        gateway_id=config.gateway_id,
    )
    writer.load_state()
    return writer


@dataclass(slots=True)
class ReplayReport:
    selected: int = 0
    #: Letters that decode now (with ``dry_run``: that would be replayed).
    decoded: int = 0
    stored: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    rfid_burst_dropped: int = 0
    #: Letters kept, by their current reason.
    still_failing: Counter[str] = field(default_factory=Counter)
    failing_ids: list[int] = field(default_factory=list)

    @property
    def stored_total(self) -> int:
        return sum(self.stored.values())

    def add(self, result: BatchResult) -> None:
        for kind, n in result.stored.items():
            self.stored[kind] = self.stored.get(kind, 0) + n
        self.duplicates += result.duplicates
        self.rfid_burst_dropped += result.rfid_burst_dropped


def replay(
    config: AgentConfig,
    selection: Selection,
    dry_run: bool = False,
    clock_ms: Callable[[], int] = now_ms,
    chunk: int = REPLAY_CHUNK,
    on_chunk: Callable[[int], None] | None = None,
) -> ReplayReport:
    """Replay the selected letters of ``config``'s store; see the module docstring."""
    if not config.db_path.is_file():
        raise ToolError(f"no agent database at {config.db_path}")
    Store(config.db_path, config.store.synchronous).open()  # the agent's migrations, if any are new
    db = open_database(config.db_path, writable=True)
    report = ReplayReport()
    try:
        writer = writer_for(db.conn, config)
        last = 0
        while True:
            where, args = selection.where(after_id=last)
            rows = list(db.table("dead_letters").rows_where(where, args, order_by="id", limit=chunk))
            if not rows:
                return report
            letters = [Letter.of(r) for r in rows]
            last = letters[-1].id
            report.selected += len(letters)
            good = []
            for letter in letters:
                reason = verdict(writer, letter)
                if reason is None:
                    good.append(letter)
                else:
                    report.still_failing[reason] += 1
                    report.failing_ids.append(letter.id)
            report.decoded += len(good)
            if good and not dry_run:
                _store(writer, good, clock_ms(), report)
            if on_chunk is not None:
                on_chunk(len(letters))
    finally:
        db.close()


def _store(writer: BatchWriter, letters: list[Letter], received_ts: int, report: ReplayReport) -> None:
    """Store a chunk in one transaction; if storage refuses it, letter by letter (the refused stay)."""
    for part in [letters] if len(letters) == 1 else [letters, *([x] for x in letters)]:
        try:
            report.add(_write(writer, part, received_ts))
        except sqlite3.OperationalError as exc:  # locked past the busy timeout, disk full: nothing changed
            raise ToolError(f"the store refused the replay ({exc}); that chunk was left as it was") from None
        except Exception as exc:  # noqa: BLE001 (a letter the database refuses: isolate it)
            if len(part) > 1:
                continue  # the whole chunk was rolled back: now one by one
            report.decoded -= 1
            report.still_failing[clip(f"storage refused the message: {exc}")] += 1
            report.failing_ids.append(part[0].id)
        else:
            if part is letters:
                return


def _write(writer: BatchWriter, letters: list[Letter], received_ts: int) -> BatchResult:
    ids = [(letter.id,) for letter in letters]

    def delete_replayed(conn: sqlite3.Connection) -> None:
        conn.executemany("DELETE FROM dead_letters WHERE id = ?", ids)

    return writer.write([_inbound(letter) for letter in letters], received_ts, also=delete_replayed)
