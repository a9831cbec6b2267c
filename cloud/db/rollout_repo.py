"""Queries over staged rollouts (``rollouts``, ``rollout_members``, ``rollout_events``) and gateway groups.

The caller owns the transaction. After creation only ``cloud.services.rollout_transitions`` calls the writers
of ``rollouts`` and ``rollout_members``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, Row, select

from cloud.db.model_repo import FLEET, upsert
from cloud.db.tables import gateway_groups, gateways, rollout_events, rollout_members, rollouts


@dataclass(frozen=True, slots=True)
class NewRollout:
    """A ``rollouts`` row to insert (``rollout_id`` is allocated by the database)."""

    task: str
    model_version: int
    previous_version: int | None
    scope: str
    group_name: str | None
    state: str
    stage: int
    n_stages: int
    phase: str
    stage_started_ts: int
    params: dict[str, Any]
    reason: str | None
    created_by: str
    created_ts: int
    updated_ts: int


@dataclass(frozen=True, slots=True)
class NewMember:
    """A ``rollout_members`` row to insert."""

    rollout_id: int
    gateway_id: str
    stage: int
    gate: str
    detail: str | None
    previous_version: int | None


# rollouts ------------------------------------------------------------------------------------


def insert_rollout(conn: Connection, rollout: NewRollout) -> int:
    """Insert the rollout; its rollout_id."""
    key = conn.execute(rollouts.insert().values(**asdict(rollout))).inserted_primary_key
    assert key is not None
    return int(key[0])


def get(conn: Connection, rollout_id: int, lock: bool = False) -> Row[Any] | None:
    """The rollout row; with ``lock``, locked for this transaction (PostgreSQL; SQLite writers are serialised)."""
    stmt = select(rollouts).where(rollouts.c.rollout_id == rollout_id)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return conn.execute(stmt).first()


def list_rollouts(conn: Connection, task: str | None = None, state: str | None = None) -> list[Row[Any]]:
    """Rollouts, newest first, optionally of one task and/or in one state."""
    stmt = select(rollouts).order_by(rollouts.c.rollout_id.desc())
    if task is not None:
        stmt = stmt.where(rollouts.c.task == task)
    if state is not None:
        stmt = stmt.where(rollouts.c.state == state)
    return list(conn.execute(stmt))


def ids_in_state(conn: Connection, state: str) -> list[int]:
    """rollout_ids of the rollouts in ``state``, ascending."""
    return [int(row.rollout_id) for row in conn.execute(
        select(rollouts.c.rollout_id).where(rollouts.c.state == state).order_by(rollouts.c.rollout_id))]


def first_in_states(conn: Connection, task: str, states: Sequence[str]) -> int | None:
    """rollout_id of one rollout of ``task`` in one of ``states``, None when there is none."""
    row = conn.execute(select(rollouts.c.rollout_id).where(
        rollouts.c.task == task, rollouts.c.state.in_(states))).first()
    return None if row is None else int(row.rollout_id)


def candidates_in_states(conn: Connection, states: Sequence[str]) -> set[tuple[str, int]]:
    """(task, model_version) of the rollouts in one of ``states``."""
    return {(row.task, int(row.model_version)) for row in conn.execute(
        select(rollouts.c.task, rollouts.c.model_version).where(rollouts.c.state.in_(states)))}


def reached_membership(conn: Connection, gateway_id: str, task: str, states: Sequence[str]) -> Row[Any] | None:
    """The newest rollout of ``task`` in ``states`` whose reached stages hold the gateway.

    The rollout's columns with the gateway's stage as ``member_stage``.
    """
    return conn.execute(
        select(rollouts, rollout_members.c.stage.label("member_stage"))
        .join(rollout_members, rollout_members.c.rollout_id == rollouts.c.rollout_id)
        .where(rollouts.c.task == task, rollouts.c.state.in_(states),
               rollout_members.c.gateway_id == gateway_id, rollout_members.c.stage <= rollouts.c.stage)
        .order_by(rollouts.c.rollout_id.desc()).limit(1)
    ).first()


def update(conn: Connection, rollout_id: int, **values: Any) -> None:
    """Set columns of the rollout (``state``, ``stage``, ``phase``, ``n_stages``, timestamps, ``reason``)."""
    conn.execute(rollouts.update().where(rollouts.c.rollout_id == rollout_id).values(**values))


# members -------------------------------------------------------------------------------------


def insert_members(conn: Connection, new: list[NewMember]) -> None:
    conn.execute(rollout_members.insert(), [asdict(m) for m in new])


def members(conn: Connection, rollout_id: int, max_stage: int | None = None) -> list[Row[Any]]:
    """The rollout's members ordered by (stage, gateway_id), optionally only up to ``max_stage``."""
    stmt = select(rollout_members).where(rollout_members.c.rollout_id == rollout_id)
    if max_stage is not None:
        stmt = stmt.where(rollout_members.c.stage <= max_stage)
    return list(conn.execute(stmt.order_by(rollout_members.c.stage, rollout_members.c.gateway_id)))


def stage_gateways(conn: Connection, rollout_id: int, stage: int) -> list[str]:
    """gateway_ids of the members of one stage, sorted."""
    return list(conn.execute(select(rollout_members.c.gateway_id).where(
        rollout_members.c.rollout_id == rollout_id, rollout_members.c.stage == stage)
        .order_by(rollout_members.c.gateway_id)).scalars())


def set_member_gate(conn: Connection, rollout_id: int, gateway_id: str, gate: str, detail: str) -> None:
    conn.execute(rollout_members.update()
                 .where(rollout_members.c.rollout_id == rollout_id, rollout_members.c.gateway_id == gateway_id)
                 .values(gate=gate, detail=detail))


# events --------------------------------------------------------------------------------------


def add_event(conn: Connection, rollout_id: int, kind: str, reason: str, now: int, stage: int | None) -> None:
    conn.execute(rollout_events.insert().values(rollout_id=rollout_id, ts=now, kind=kind, stage=stage,
                                                reason=reason))


def events(conn: Connection, rollout_id: int) -> list[Row[Any]]:
    """The rollout's events in the order they happened."""
    return list(conn.execute(select(rollout_events).where(rollout_events.c.rollout_id == rollout_id)
                             .order_by(rollout_events.c.event_id)))


# gateways and groups -------------------------------------------------------------------------


def gateway_sites(conn: Connection) -> dict[str, str]:
    """Every registered gateway's site."""
    return {row.gateway_id: row.site for row in conn.execute(select(gateways.c.gateway_id, gateways.c.site))}


def eligible_gateways(conn: Connection, scope: str, group: str | None) -> list[tuple[str, str]]:
    """(gateway_id, site) of the registered gateways of a scope (and group), by gateway_id."""
    stmt = select(gateways.c.gateway_id, gateways.c.site).order_by(gateways.c.gateway_id)
    if scope != FLEET:
        stmt = stmt.where(gateways.c.site == scope.removeprefix("site:"))
    if group is not None:
        stmt = stmt.join(gateway_groups, gateway_groups.c.gateway_id == gateways.c.gateway_id).where(
            gateway_groups.c.group_name == group)
    return [(row.gateway_id, row.site) for row in conn.execute(stmt)]


def set_group(conn: Connection, gateway_id: str, group: str | None, now: int) -> None:
    """Put the gateway into ``group`` (replacing its group), or into none."""
    if group is None:
        conn.execute(gateway_groups.delete().where(gateway_groups.c.gateway_id == gateway_id))
    else:
        upsert(conn, gateway_groups, {"gateway_id": gateway_id, "group_name": group, "updated_ts": now},
               ["gateway_id"])
