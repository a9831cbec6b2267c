"""Queries over the model registry tables (versions, artifacts, releases, baselines, pins, gateway reports).

The caller owns the transaction. Functions that allocate numbers (model versions, metadata
versions) must run after :func:`lock_task` in a writing transaction, so replicas never collide.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

from sqlalchemy import Connection, Row, Table, func, select, text
from sqlalchemy.dialects import postgresql, sqlite

from cloud.db.repo import insert_ignore
from cloud.db.tables import (
    gateway_model_pins,
    gateway_model_reports,
    model_artifacts,
    model_baselines,
    model_releases,
    model_signing_requests,
    model_versions,
)

FLEET: Final = "fleet"
#: Base of the PostgreSQL advisory-lock keys that serialise number allocation per task.
_LOCK_BASE: Final = 7263512100


def site_scope(site: str) -> str:
    return f"site:{site}"


def lock_task(conn: Connection, task: str) -> None:
    """Serialise writers of one task's registry (SQLite already serialises with BEGIN IMMEDIATE)."""
    if conn.dialect.name == "postgresql":
        key = _LOCK_BASE + sum(task.encode())
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def _insert(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    return postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table)


def upsert(conn: Connection, table: Table, row: Mapping[str, Any], keys: list[str]) -> None:
    """Insert ``row`` or update the columns other than ``keys`` of the row with the same keys."""
    stmt = _insert(conn, table).values(**row)
    updates = {k: v for k, v in row.items() if k not in keys}
    conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=updates))


# versions and artifacts ----------------------------------------------------------------------


def max_model_version(conn: Connection, task: str) -> int:
    value = conn.execute(select(func.max(model_versions.c.model_version)).where(model_versions.c.task == task))
    return int(value.scalar() or 0)


def get_version(conn: Connection, task: str, version: int) -> Row[Any] | None:
    return conn.execute(
        select(model_versions).where(model_versions.c.task == task, model_versions.c.model_version == version)
    ).first()


@dataclass(frozen=True, slots=True)
class NewVersion:
    """A ``model_versions`` row to insert (its number allocated under :func:`lock_task`)."""

    task: str
    model_version: int
    scope: str
    sha256: str
    size_bytes: int
    manifest: dict[str, Any]
    metrics: dict[str, float]
    data_from_ts: int | None
    data_to_ts: int | None
    parent_version: int | None
    created_ts: int
    created_by: str
    job_id: int | None
    status: str
    gate_passed: bool | None
    gate_reason: str | None
    promoted_by: str | None
    promoted_ts: int | None


def insert_version(conn: Connection, version: NewVersion) -> None:
    conn.execute(model_versions.insert().values(**asdict(version)))


def list_versions(conn: Connection, task: str | None = None, status: str | None = None) -> list[Row[Any]]:
    """Versions ordered by (task, model_version), optionally of one task and/or one status."""
    stmt = select(model_versions).order_by(model_versions.c.task, model_versions.c.model_version)
    if task is not None:
        stmt = stmt.where(model_versions.c.task == task)
    if status is not None:
        stmt = stmt.where(model_versions.c.status == status)
    return list(conn.execute(stmt))


def version_of_job(conn: Connection, task: str, job_id: int) -> int | None:
    """The version that retraining job registered, None when it registered none."""
    value = conn.execute(select(model_versions.c.model_version).where(
        model_versions.c.task == task, model_versions.c.job_id == job_id)).scalar()
    return None if value is None else int(value)


def set_status(conn: Connection, task: str, version: int, status: str, **extra: Any) -> None:
    conn.execute(
        model_versions.update()
        .where(model_versions.c.task == task, model_versions.c.model_version == version)
        .values(status=status, **extra)
    )


def put_artifact(conn: Connection, sha256: str, data: bytes, now_ms: int) -> None:
    insert_ignore(conn, model_artifacts, [{"sha256": sha256, "size_bytes": len(data), "data": data,
                                           "created_ts": now_ms}])


def get_artifact(conn: Connection, sha256: str) -> bytes | None:
    row = conn.execute(select(model_artifacts.c.data).where(model_artifacts.c.sha256 == sha256)).first()
    return None if row is None else bytes(row.data)


# releases ------------------------------------------------------------------------------------


def next_metadata_version(conn: Connection, task: str) -> int:
    """One above every metadata_version used by the task's releases and signing requests."""
    released = conn.execute(select(func.max(model_releases.c.metadata_version)).where(model_releases.c.task == task))
    requested = conn.execute(
        select(func.max(model_signing_requests.c.metadata_version)).where(model_signing_requests.c.task == task)
    )
    return max(int(released.scalar() or 0), int(requested.scalar() or 0)) + 1


def latest_release(conn: Connection, task: str, model_version: int) -> Row[Any] | None:
    """The served (not held) release of that model with the highest metadata_version."""
    return conn.execute(
        select(model_releases)
        .where(model_releases.c.task == task, model_releases.c.model_version == model_version,
               model_releases.c.held.is_(False))
        .order_by(model_releases.c.metadata_version.desc())
        .limit(1)
    ).first()


def releases_of(conn: Connection, task: str, model_version: int) -> list[Row[Any]]:
    return list(conn.execute(
        select(model_releases)
        .where(model_releases.c.task == task, model_releases.c.model_version == model_version)
        .order_by(model_releases.c.metadata_version)
    ))


# baselines and pins --------------------------------------------------------------------------


def baseline(conn: Connection, task: str, scope: str) -> int | None:
    row = conn.execute(
        select(model_baselines.c.model_version).where(model_baselines.c.task == task,
                                                      model_baselines.c.scope == scope)
    ).first()
    return None if row is None else int(row.model_version)


def scope_baseline(conn: Connection, task: str, scope: str) -> int | None:
    """The version a scope runs outside rollouts; a site without its own falls back to the fleet's."""
    found = baseline(conn, task, scope)
    if found is None and scope != FLEET:
        found = baseline(conn, task, FLEET)
    return found


def baseline_scopes(conn: Connection, task: str, version: int) -> list[str]:
    """The scopes whose baseline is that version (unordered)."""
    return [str(r.scope) for r in conn.execute(
        select(model_baselines.c.scope).where(model_baselines.c.task == task,
                                              model_baselines.c.model_version == version))]


def set_baseline(conn: Connection, task: str, scope: str, version: int, now_ms: int) -> None:
    upsert(conn, model_baselines, {"task": task, "scope": scope, "model_version": version, "updated_ts": now_ms},
           ["task", "scope"])


def drop_site_baselines(conn: Connection, task: str, sites: set[str]) -> dict[str, int]:
    """Delete the task's own baselines of these sites (they fall back to the fleet's); what was dropped."""
    scopes = [site_scope(site) for site in sorted(sites)]
    if not scopes:
        return {}
    rows = conn.execute(select(model_baselines.c.scope, model_baselines.c.model_version).where(
        model_baselines.c.task == task, model_baselines.c.scope.in_(scopes))).all()
    conn.execute(model_baselines.delete().where(model_baselines.c.task == task, model_baselines.c.scope.in_(scopes)))
    return {row.scope: int(row.model_version) for row in rows}


def pin(conn: Connection, gateway_id: str, task: str) -> int | None:
    row = conn.execute(
        select(gateway_model_pins.c.model_version).where(gateway_model_pins.c.gateway_id == gateway_id,
                                                         gateway_model_pins.c.task == task)
    ).first()
    return None if row is None else int(row.model_version)


def set_pin(conn: Connection, gateway_id: str, task: str, version: int, now_ms: int) -> None:
    upsert(conn, gateway_model_pins,
           {"gateway_id": gateway_id, "task": task, "model_version": version, "updated_ts": now_ms},
           ["gateway_id", "task"])


def clear_pins(conn: Connection, task: str, gateway_ids: list[str]) -> None:
    if gateway_ids:
        conn.execute(gateway_model_pins.delete().where(gateway_model_pins.c.task == task,
                                                       gateway_model_pins.c.gateway_id.in_(gateway_ids)))


def version_in_use(conn: Connection, task: str, version: int) -> bool:
    """Whether a scope's baseline or a gateway's pin is that version."""
    used = conn.execute(select(func.count()).select_from(model_baselines).where(
        model_baselines.c.task == task, model_baselines.c.model_version == version)).scalar()
    pinned = conn.execute(select(func.count()).select_from(gateway_model_pins).where(
        gateway_model_pins.c.task == task, gateway_model_pins.c.model_version == version)).scalar()
    return bool(used) or bool(pinned)


def baseline_and_pinned_versions(conn: Connection) -> set[tuple[str, int]]:
    """(task, version) pairs that are a scope's baseline or a gateway's pin."""
    found = {(row.task, int(row.model_version))
             for row in conn.execute(select(model_baselines.c.task, model_baselines.c.model_version))}
    found |= {(row.task, int(row.model_version))
              for row in conn.execute(select(gateway_model_pins.c.task, gateway_model_pins.c.model_version))}
    return found


def gateway_version(conn: Connection, gateway_id: str, site: str, task: str) -> int | None:
    """The version a gateway runs outside rollouts: its pin, else its site's or the fleet's baseline."""
    pinned = pin(conn, gateway_id, task)
    return pinned if pinned is not None else scope_baseline(conn, task, site_scope(site))


# gateway reports -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportRow:
    """A gateway's latest ``ModelReport`` (as JSON) with the health figures the fleet view filters on."""

    gateway_id: str
    ts: int
    received_ts: int
    report: dict[str, Any]
    outbox_depth: int | None
    oldest_unsynced_ts: int | None
    mqtt_connected: bool | None
    rejected_updates: int


def report_ts(conn: Connection, gateway_id: str) -> int | None:
    """``ts`` of the gateway's stored report, None when it has none."""
    row = conn.execute(select(gateway_model_reports.c.ts).where(
        gateway_model_reports.c.gateway_id == gateway_id)).first()
    return None if row is None else int(row.ts)


def put_report(conn: Connection, report: ReportRow) -> None:
    """Store the gateway's report, replacing the one it had."""
    upsert(conn, gateway_model_reports, asdict(report), ["gateway_id"])


def report_documents(conn: Connection, gateway_ids: list[str]) -> list[tuple[str, Any]]:
    """(gateway_id, report JSON) of those gateways that have a report."""
    rows = conn.execute(select(gateway_model_reports.c.gateway_id, gateway_model_reports.c.report)
                        .where(gateway_model_reports.c.gateway_id.in_(gateway_ids)))
    return [(row.gateway_id, row.report) for row in rows]
