"""Signed release documents and key rotations.

With an online key (``signing_key_file``) the cloud signs releases when it needs them. Without
one, it writes signing requests that ``edgehouse models sign --key FILE`` signs on a machine
holding the key and uploads; the cloud stores an upload only when its signature verifies
against a trusted key and its signed part is exactly the requested document.

Trusted keys: ``trusted_keys`` from the settings, the online key, and keys added (minus keys
revoked) by accepted key rotations, in rotation order. A rotation must be signed by a key
trusted before it and carry a higher ``rotation_version``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import ValidationError
from sqlalchemy import Connection, Engine, Row

from cloud.clock import now_ms
from cloud.db import model_repo, signing_repo
from cloud.db.engine import reader
from cloud.model_schemas import KeysOut, ReleaseOut, SigningRequestOut
from cloud.services.errors import BadRequest, Conflict, NotFound
from cloud.settings import CloudSettings
from protocols.model_update import (
    ArtifactRef,
    ModelRelease,
    SignedKeyRotation,
    SignedRelease,
    release_version,
)
from protocols.signing import SignatureError, Signer, check_rotation, rotate_trust, trusted_map, verify

log = logging.getLogger(__name__)

DAY_MS: Final = 86_400_000
#: A release name must match the contract's pattern; other manifest names fall back to the task.
_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
Purpose = Literal["release", "rollback", "resign"]



@dataclass(frozen=True)
class Keyring:
    """The online signer (if any), the keys trusted by configuration, and the release lifetime."""

    signer: Signer | None
    configured: dict[str, bytes]
    ttl_ms: int

    @classmethod
    def from_settings(cls, settings: CloudSettings) -> Keyring:
        signer = None
        if settings.signing_key_file is not None:
            try:
                signer = Signer.from_file(settings.signing_key_file)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"signing_key_file: {exc}") from None
        configured = trusted_map(settings.trusted_keys)
        if signer is not None:
            configured[signer.keyid] = signer.public_raw
        return cls(signer=signer, configured=configured, ttl_ms=int(settings.release_ttl_days * DAY_MS))


def document(model: SignedRelease | SignedKeyRotation) -> dict[str, Any]:
    """A wire document as stored in a JSON column."""
    data: dict[str, Any] = json.loads(model.model_dump_json(by_alias=True))
    return data


def parse_release(value: Any) -> SignedRelease:
    return SignedRelease.model_validate_json(json.dumps(value))


def parse_rotation(value: Any) -> SignedKeyRotation:
    return SignedKeyRotation.model_validate_json(json.dumps(value))


# trust ---------------------------------------------------------------------------------------


def rotations(conn: Connection) -> list[SignedKeyRotation]:
    return [parse_rotation(document) for document in signing_repo.rotation_documents(conn)]


def trusted_keys(conn: Connection, keyring: Keyring) -> dict[str, bytes]:
    trusted = dict(keyring.configured)
    for rotation in rotations(conn):
        trusted = rotate_trust(trusted, rotation.signed)
    return trusted


def keys_info(engine: Engine, keyring: Keyring) -> KeysOut:
    with reader(engine) as conn:
        trusted = trusted_keys(conn, keyring)
        top = signing_repo.top_rotation_version(conn)
    return KeysOut(online_keyid=None if keyring.signer is None else keyring.signer.keyid,
                   trusted=sorted(trusted), rotation_version=top)


def add_rotation(engine: Engine, keyring: Keyring, doc: SignedKeyRotation) -> KeysOut:
    """Store a key rotation signed by an already trusted key; 409 unless its version is the highest."""
    with engine.begin() as conn:
        model_repo.lock_task(conn, "key_rotation")
        top = signing_repo.top_rotation_version(conn)
        try:
            check_rotation(doc, trusted_keys(conn, keyring), top)
        except SignatureError as exc:
            if exc.code == "stale":
                raise Conflict(str(exc), "signed.rotation_version") from None
            raise BadRequest(f"key rotation refused ({exc.code}): {exc}", "signatures") from None
        signing_repo.insert_rotation(conn, doc.signed.rotation_version, document(doc), now_ms())
    return keys_info(engine, keyring)


# releases ------------------------------------------------------------------------------------


def release_out(row: Row[Any]) -> ReleaseOut:
    doc = parse_release(row.document)
    return ReleaseOut(metadata_version=row.metadata_version, model_version=row.model_version,
                      rollback=row.rollback, held=row.held, created_ts=row.created_ts, expires_ts=row.expires_ts,
                      keyids=[s.keyid for s in doc.signatures])


def build_release(version_row: Row[Any], metadata_version: int, rollback: bool, now: int,
                  ttl_ms: int) -> ModelRelease:
    manifest: dict[str, Any] = dict(version_row.manifest)
    name = str(manifest.get("name") or version_row.task)
    if not set(name) <= _NAME_CHARS or not name[:1].isalnum() or len(name) > 64:
        name = version_row.task
    return ModelRelease(
        task=version_row.task, name=name, metadata_version=metadata_version,
        model_version=version_row.model_version, created_ts=now, expires_ts=now + ttl_ms,
        artifact=ArtifactRef(sha256=version_row.sha256, length=version_row.size_bytes),
        rollback=rollback, manifest=manifest, v=release_version(version_row.task),
    )


def store_release(conn: Connection, doc: SignedRelease, held: bool, now: int) -> None:
    r = doc.signed
    signing_repo.insert_release(conn, task=r.task, metadata_version=r.metadata_version, model_version=r.model_version,
                                rollback=r.rollback, held=held, document=document(doc), created_ts=now,
                                expires_ts=r.expires_ts)


@dataclass(frozen=True)
class Issued:
    """What :func:`issue_release` did: a signed release stored, or a signing request written."""

    metadata_version: int
    signed: bool


def issue_release(conn: Connection, keyring: Keyring, task: str, model_version: int, *, rollback: bool,
                  held: bool, purpose: Purpose, now: int) -> Issued:
    """Sign a release of that model now (online key) or request an offline signature.

    Runs in the caller's writing transaction; takes the task's allocation lock.
    """
    model_repo.lock_task(conn, task)
    row = model_repo.get_version(conn, task, model_version)
    if row is None:
        raise NotFound(f"{task} model version {model_version} does not exist", "model_version")
    md = model_repo.next_metadata_version(conn, task)
    release = build_release(row, md, rollback, now, keyring.ttl_ms)
    if keyring.signer is not None:
        store_release(conn, keyring.signer.sign_release(release), held, now)
        return Issued(md, True)
    signing_repo.insert_request(conn, task=task, metadata_version=md, model_version=model_version, purpose=purpose,
                                held=held, release=json.loads(release.model_dump_json(by_alias=True)), now=now)
    return Issued(md, False)


def publish_held_rollback(conn: Connection, task: str, model_version: int, above_md: int) -> int | None:
    """Serve a pre-signed rollback to ``model_version`` newer than ``above_md``; its metadata_version."""
    md = signing_repo.held_rollback_md(conn, task, model_version, above_md, now_ms())
    if md is None:
        return None
    signing_repo.serve_release(conn, task, md)
    return md


def release_pending(conn: Connection, task: str, model_version: int, rollback: bool) -> bool:
    """Whether a matching signing request is still waiting (so a rollback will be served once signed)."""
    if rollback:
        # a rollback requested while rolling back is served as soon as it is signed
        signing_repo.unhold_pending_rollbacks(conn, task, model_version)
    return signing_repo.has_pending_request(conn, task, model_version)


def get_release(engine: Engine, task: str, metadata_version: int) -> SignedRelease:
    with reader(engine) as conn:
        row = signing_repo.release(conn, task, metadata_version)
    if row is None:
        raise NotFound(f"no {task} release with metadata_version {metadata_version}", "metadata_version")
    return parse_release(row.document)


def signing_requests(engine: Engine, state: str | None = "pending") -> list[SigningRequestOut]:
    with reader(engine) as conn:
        rows = signing_repo.requests(conn, state)
    return [
        SigningRequestOut(request_id=r.request_id, task=r.task, metadata_version=r.metadata_version,
                          model_version=r.model_version, purpose=r.purpose, state=r.state, created_ts=r.created_ts,
                          release=ModelRelease.model_validate_json(json.dumps(r.release)))
        for r in rows
    ]


def accept_signed_release(engine: Engine, keyring: Keyring, doc: SignedRelease) -> ReleaseOut:
    """Store an offline-signed release: trusted signature, and exactly the requested document."""
    r = doc.signed
    with engine.begin() as conn:
        model_repo.lock_task(conn, r.task)
        try:
            verify(r, doc.signatures, trusted_keys(conn, keyring))
        except SignatureError as exc:
            raise BadRequest(f"release refused ({exc.code}): {exc}", "signatures") from None
        req = signing_repo.request(conn, r.task, r.metadata_version)
        if req is None:
            raise NotFound(f"no signing request for {r.task} metadata_version {r.metadata_version}",
                           "signed.metadata_version")
        if req.state != "pending":
            raise Conflict("this release is already signed and stored", "signed.metadata_version")
        try:
            requested = ModelRelease.model_validate_json(json.dumps(req.release))
        except ValidationError as exc:  # pragma: no cover - written by us
            raise Conflict(f"the stored request is unreadable: {exc}", "signed") from None
        if requested != r:
            raise Conflict("the signed document differs from the requested one", "signed")
        store_release(conn, doc, req.held, now_ms())
        signing_repo.mark_signed(conn, req.request_id, now_ms())
        row = signing_repo.release(conn, r.task, r.metadata_version)
        assert row is not None
    log.info("stored offline-signed %s release md=%d (model %d)", r.task, r.metadata_version, r.model_version)
    return release_out(row)


def due_for_resign(conn: Connection, keyring: Keyring, in_use: set[tuple[str, int]], now: int
                   ) -> set[tuple[str, int]]:
    """(task, version) pairs in use whose served release expires within a quarter of the lifetime."""
    due: set[tuple[str, int]] = set()
    for task, version in in_use:
        latest = model_repo.latest_release(conn, task, version)
        if latest is not None and latest.expires_ts - now <= keyring.ttl_ms // 4:
            due.add((task, version))
    return due


def resign_expiring(conn: Connection, keyring: Keyring, in_use: set[tuple[str, int]], now: int) -> list[int]:
    """Re-sign (online key only) the served releases of models in use that expire within ttl/4.

    The new document has a new metadata_version and the same model (and rollback flag).
    """
    if keyring.signer is None:
        return []
    done: list[int] = []
    for task, version in sorted(due_for_resign(conn, keyring, in_use, now)):
        model_repo.lock_task(conn, task)  # another replica may have re-signed it meanwhile: check again
        latest = model_repo.latest_release(conn, task, version)
        if latest is None or latest.expires_ts - now > keyring.ttl_ms // 4:
            continue
        issued = issue_release(conn, keyring, task, version, rollback=bool(latest.rollback), held=False,
                               purpose="resign", now=now)
        log.info("re-signed %s model %d as metadata_version %d (the previous one expires at %d)", task, version,
                 issued.metadata_version, latest.expires_ts)
        done.append(issued.metadata_version)
    return done
