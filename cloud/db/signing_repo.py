"""Queries over signed releases, offline signing requests and key rotations.

The caller owns the transaction; writers take ``model_repo.lock_task`` first (as the services do).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, func, select

from cloud.db.tables import model_key_rotations, model_releases, model_signing_requests

# key rotations -------------------------------------------------------------------------------


def rotation_documents(conn: Connection) -> list[Any]:
    """Every accepted rotation's document (JSON), in rotation order."""
    rows = conn.execute(select(model_key_rotations.c.document).order_by(model_key_rotations.c.rotation_version))
    return [row.document for row in rows]


def top_rotation_version(conn: Connection) -> int:
    """The highest accepted rotation_version, 0 without rotations."""
    return int(conn.execute(select(func.max(model_key_rotations.c.rotation_version))).scalar() or 0)


def insert_rotation(conn: Connection, rotation_version: int, document: dict[str, Any], now: int) -> None:
    conn.execute(model_key_rotations.insert().values(rotation_version=rotation_version, document=document,
                                                     created_ts=now))


# releases ------------------------------------------------------------------------------------


def insert_release(conn: Connection, *, task: str, metadata_version: int, model_version: int, rollback: bool,
                   held: bool, document: dict[str, Any], created_ts: int, expires_ts: int) -> None:
    conn.execute(model_releases.insert().values(
        task=task, metadata_version=metadata_version, model_version=model_version, rollback=rollback, held=held,
        document=document, created_ts=created_ts, expires_ts=expires_ts))


def release(conn: Connection, task: str, metadata_version: int) -> Row[Any] | None:
    return conn.execute(select(model_releases).where(
        model_releases.c.task == task, model_releases.c.metadata_version == metadata_version)).first()


def top_release_md(conn: Connection, task: str, model_version: int) -> int:
    """The highest metadata_version of that model's releases (served or held), 0 without any."""
    value = conn.execute(select(func.max(model_releases.c.metadata_version)).where(
        model_releases.c.task == task, model_releases.c.model_version == model_version)).scalar()
    return int(value or 0)


def held_rollback_md(conn: Connection, task: str, model_version: int, above_md: int, now: int) -> int | None:
    """The newest held, unexpired rollback release to that model above ``above_md``; its metadata_version."""
    row = conn.execute(
        select(model_releases.c.metadata_version)
        .where(model_releases.c.task == task, model_releases.c.model_version == model_version,
               model_releases.c.rollback.is_(True), model_releases.c.held.is_(True),
               model_releases.c.metadata_version > above_md, model_releases.c.expires_ts > now)
        .order_by(model_releases.c.metadata_version.desc()).limit(1)
    ).first()
    return None if row is None else int(row.metadata_version)


def serve_release(conn: Connection, task: str, metadata_version: int) -> None:
    """A held release is served from now on."""
    conn.execute(model_releases.update()
                 .where(model_releases.c.task == task, model_releases.c.metadata_version == metadata_version)
                 .values(held=False))


# signing requests ----------------------------------------------------------------------------


def insert_request(conn: Connection, *, task: str, metadata_version: int, model_version: int, purpose: str,
                   held: bool, release: dict[str, Any], now: int) -> None:
    """A pending request for an offline signature of ``release``."""
    conn.execute(model_signing_requests.insert().values(
        task=task, metadata_version=metadata_version, model_version=model_version, purpose=purpose, held=held,
        release=release, state="pending", created_ts=now))


def unhold_pending_rollbacks(conn: Connection, task: str, model_version: int) -> None:
    """Pending rollback requests to that model will be served as soon as they are signed."""
    conn.execute(model_signing_requests.update()
                 .where(model_signing_requests.c.task == task,
                        model_signing_requests.c.model_version == model_version,
                        model_signing_requests.c.purpose == "rollback",
                        model_signing_requests.c.state == "pending")
                 .values(held=False))


def has_pending_request(conn: Connection, task: str, model_version: int) -> bool:
    row = conn.execute(
        select(model_signing_requests.c.request_id)
        .where(model_signing_requests.c.task == task, model_signing_requests.c.model_version == model_version,
               model_signing_requests.c.state == "pending")
        .limit(1)
    ).first()
    return row is not None


def pending_metadata_versions(conn: Connection, task: str, model_version: int) -> list[int]:
    """metadata_versions of that model's pending requests, ascending."""
    return [int(r.metadata_version) for r in conn.execute(
        select(model_signing_requests.c.metadata_version).where(
            model_signing_requests.c.task == task, model_signing_requests.c.model_version == model_version,
            model_signing_requests.c.state == "pending").order_by(model_signing_requests.c.metadata_version))]


def requests(conn: Connection, state: str | None) -> list[Row[Any]]:
    """Signing requests by request_id, optionally only those in ``state``."""
    stmt = select(model_signing_requests).order_by(model_signing_requests.c.request_id)
    if state is not None:
        stmt = stmt.where(model_signing_requests.c.state == state)
    return list(conn.execute(stmt))


def request(conn: Connection, task: str, metadata_version: int) -> Row[Any] | None:
    return conn.execute(
        select(model_signing_requests).where(model_signing_requests.c.task == task,
                                             model_signing_requests.c.metadata_version == metadata_version)
    ).first()


def mark_signed(conn: Connection, request_id: int, now: int) -> None:
    conn.execute(model_signing_requests.update()
                 .where(model_signing_requests.c.request_id == request_id)
                 .values(state="signed", signed_ts=now))
