"""Alert management after ISA-18.2: list with states, acknowledge (one or many), shelve, comment, audit.

Alarm rows are kept by sync ingest (``cloud.db.alarm_repo.track``); this module is the read side and
the operator's actions. Every action is recorded in ``alarm_events`` with who and when, in the same
transaction as the change. Shelving ends by itself: an alarm is shelved while ``shelved_until`` is in
the future, so nothing has to run for it to come back.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from cloud.clock import now_ms
from cloud.console_schemas import (
    AckRequest,
    AckResult,
    AlarmDetail,
    AlarmEventOut,
    AlarmOut,
    AlarmPage,
    AlarmRef,
    ShelveRequest,
    SiteFlood,
)
from cloud.db import alarm_repo
from cloud.db.alarm_repo import AlarmFilter
from cloud.db.engine import reader
from cloud.schemas import payload_dict
from cloud.services.alarm_conditions import FLOOD_LIMIT, isa_state, shelved
from cloud.services.errors import Conflict, NotFound


def _alarm(row: Any, now: int) -> AlarmOut:
    cleared = row.cleared_ts is not None
    acked = row.acked_ts is not None
    return AlarmOut(
        gateway_id=row.gateway_id, id=row.id, site=row.site, isa_state=isa_state(cleared, acked),
        active=not cleared, acked=acked, shelved=shelved(row.shelved_until, now), ts=row.ts,
        cleared_ts=row.cleared_ts, acked_ts=row.acked_ts, acked_by=row.acked_by,
        shelved_until=row.shelved_until if shelved(row.shelved_until, now) else None,
        shelved_by=row.shelved_by if shelved(row.shelved_until, now) else None,
        shelve_reason=row.shelve_reason if shelved(row.shelved_until, now) else None,
        n_comments=row.n_comments, alert=payload_dict(row.payload))


def floods(engine: Engine, site: str | None = None, now: int | None = None) -> list[SiteFlood]:
    at = now_ms() if now is None else now
    with reader(engine) as conn:
        counts = alarm_repo.flood(conn, at, site)
    return [SiteFlood(site=s, alarms_10min=n, flood=n > FLOOD_LIMIT) for s, n in sorted(counts.items())]


def list_alarms(engine: Engine, f: AlarmFilter, *, sort: str = "-ts", offset: int = 0, limit: int = 50,
                now: int | None = None) -> AlarmPage:
    at = now_ms() if now is None else now
    with reader(engine) as conn:
        rows = alarm_repo.list_alarms(conn, f, at, sort, offset, limit)
        counts = alarm_repo.state_counts(conn, f, at)
        flood = alarm_repo.flood(conn, at, f.site)
    return AlarmPage(items=[_alarm(r, at) for r in rows], offset=offset, limit=limit, total=counts["total"],
                     active=counts["active"], unacked=counts["unacked"], shelved=counts["shelved"],
                     flood=[SiteFlood(site=s, alarms_10min=n, flood=n > FLOOD_LIMIT) for s, n in sorted(flood.items())])


def get_alarm(engine: Engine, gateway_id: str, alarm_id: str, now: int | None = None) -> AlarmDetail:
    at = now_ms() if now is None else now
    with reader(engine) as conn:
        row = alarm_repo.get_alarm(conn, gateway_id, alarm_id)
        if row is None:
            raise NotFound(f"no alarm {alarm_id!r} of gateway {gateway_id!r}", "id")
        events = alarm_repo.events(conn, gateway_id, alarm_id)
    out = _alarm(row, at)
    return AlarmDetail(**out.model_dump(), events=[
        AlarmEventOut(ts=e.ts, actor=e.actor, action=e.action, text=e.text, shelved_until=e.shelved_until)
        for e in events])


def acknowledge(engine: Engine, req: AckRequest, actor: str, now: int | None = None) -> AckResult:
    """Acknowledge every alarm named (all or none: an unknown one is 404 naming it)."""
    at = now_ms() if now is None else now
    done: list[AlarmRef] = []
    already: list[AlarmRef] = []
    with engine.begin() as conn:
        for i, ref in enumerate(req.alarms):
            row = alarm_repo.get_alarm(conn, ref.gateway_id, ref.id)
            if row is None:
                raise NotFound(f"no alarm {ref.id!r} of gateway {ref.gateway_id!r}", f"alarms.{i}")
            if row.acked_ts is not None or ref in done:
                already.append(ref)
                continue
            alarm_repo.set_values(conn, ref.gateway_id, ref.id, acked_ts=at, acked_by=actor)
            alarm_repo.add_event(conn, ref.gateway_id, ref.id, at, actor, "ack", req.comment)
            done.append(ref)
    return AckResult(acknowledged=done, already_acknowledged=already)


def _existing(conn: Any, gateway_id: str, alarm_id: str) -> Any:
    row = alarm_repo.get_alarm(conn, gateway_id, alarm_id)
    if row is None:
        raise NotFound(f"no alarm {alarm_id!r} of gateway {gateway_id!r}", "id")
    return row


def shelve(engine: Engine, gateway_id: str, alarm_id: str, req: ShelveRequest, actor: str,
           now: int | None = None) -> AlarmDetail:
    at = now_ms() if now is None else now
    until = at + req.duration_s * 1000
    with engine.begin() as conn:
        _existing(conn, gateway_id, alarm_id)
        alarm_repo.set_values(conn, gateway_id, alarm_id, shelved_until=until, shelved_by=actor,
                              shelve_reason=req.reason)
        alarm_repo.add_event(conn, gateway_id, alarm_id, at, actor, "shelve", req.reason, until)
    return get_alarm(engine, gateway_id, alarm_id, at)


def unshelve(engine: Engine, gateway_id: str, alarm_id: str, actor: str, now: int | None = None) -> AlarmDetail:
    at = now_ms() if now is None else now
    with engine.begin() as conn:
        row = _existing(conn, gateway_id, alarm_id)
        if not shelved(row.shelved_until, at):
            raise Conflict("the alarm is not shelved", "id")
        alarm_repo.set_values(conn, gateway_id, alarm_id, shelved_until=None, shelved_by=None, shelve_reason=None)
        alarm_repo.add_event(conn, gateway_id, alarm_id, at, actor, "unshelve")
    return get_alarm(engine, gateway_id, alarm_id, at)


def comment(engine: Engine, gateway_id: str, alarm_id: str, text: str, actor: str,
            now: int | None = None) -> AlarmDetail:
    at = now_ms() if now is None else now
    with engine.begin() as conn:
        _existing(conn, gateway_id, alarm_id)
        alarm_repo.add_comment_count(conn, gateway_id, alarm_id)
        alarm_repo.add_event(conn, gateway_id, alarm_id, at, actor, "comment", text)
    return get_alarm(engine, gateway_id, alarm_id, at)


__all__ = ["AlarmFilter", "acknowledge", "comment", "floods", "get_alarm", "list_alarms", "payload_dict",
           "shelve", "unshelve"]
