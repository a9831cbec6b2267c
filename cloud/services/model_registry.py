"""The model registry: candidate versions with their artifacts, promotion, and what each scope runs.

A version's number is the task's highest + 1, written into its manifest (validated with
``models.manifest.ModelManifest``; its sha256/size must match the bytes). Artifacts are stored
once per sha256. A task without versions gets the shipped default model (``models/default``)
as its baseline version, status ``promoted``, created by ``shipped-default``: gateways already
run it, so it needs no rollout (and no release until a rollback has to point at it).

Statuses: ``candidate`` (registered) → ``promoted`` (approved, release signed or signature
requested) → ``retired`` (replaced as a scope's baseline) or ``rejected`` (rolled back).
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import Engine, Row
from sqlalchemy.exc import IntegrityError

from cloud.clock import now_ms
from cloud.db import model_repo, signing_repo
from cloud.db.engine import reader
from cloud.db.model_repo import NewVersion
from cloud.model_schemas import ModelVersionDetail, ModelVersionOut
from cloud.services.errors import BadRequest, Conflict, NotFound
from cloud.services.model_signing import Keyring, issue_release, release_out
from models.manifest import ModelManifest, manifest_path_for, read_manifest
from models.runtime import default_model_path
from protocols.model_update import MODEL_TASKS

log = logging.getLogger(__name__)

SHIPPED_DEFAULT: Final = "shipped-default"
_SCOPE: Final = re.compile(r"^(fleet|site:[A-Za-z0-9][A-Za-z0-9_.:-]{0,63})$")

__all__ = ["CandidateIn", "ModelVersionOut", "deployed_model", "ensure_shipped_defaults", "list_versions",
           "promote", "register_candidate", "version_detail"]


class CandidateIn(BaseModel):
    """A new model version to register (from a retraining job or an upload)."""

    model_config = ConfigDict(extra="forbid")

    task: str
    scope: str = "fleet"
    tflite: bytes
    manifest: dict[str, Any]
    metrics: dict[str, float]
    data_from_ts: int | None
    data_to_ts: int | None
    parent_version: int | None
    created_by: str
    job_id: int | None = None
    gate_passed: bool | None = None
    gate_reason: str | None = None


def _out(row: Row[Any]) -> ModelVersionOut:
    return ModelVersionOut(
        task=row.task, model_version=row.model_version, scope=row.scope, status=row.status, sha256=row.sha256,
        size_bytes=row.size_bytes, metrics=dict(row.metrics), data_from_ts=row.data_from_ts,
        data_to_ts=row.data_to_ts, parent_version=row.parent_version, created_ts=row.created_ts,
        created_by=row.created_by, job_id=row.job_id, gate_passed=row.gate_passed, gate_reason=row.gate_reason,
        promoted_by=row.promoted_by, promoted_ts=row.promoted_ts,
    )


def _check_task(task: str) -> None:
    if task not in MODEL_TASKS:
        raise BadRequest(f"unknown task {task!r} (known: {', '.join(MODEL_TASKS)})", "task")


# shipped defaults ----------------------------------------------------------------------------


def ensure_shipped_defaults(engine: Engine) -> None:
    """Import the shipped default model of every task that has no version yet (idempotent).

    Called once by every process that opens the database, right after its migrations: the app's lifespan and the
    CLI's commands (worker, controller, ...). Services rely on it having run.
    """
    with reader(engine) as conn:
        missing = [t for t in MODEL_TASKS if model_repo.max_model_version(conn, t) == 0]
    for task in missing:
        _import_default(engine, task)


def _import_default(engine: Engine, task: str) -> None:
    path = default_model_path(task)
    try:
        data = path.read_bytes()
        manifest = read_manifest(manifest_path_for(path))
    except (OSError, ValidationError) as exc:
        log.warning("no shipped default model for %s: %s", task, exc)
        return
    if manifest.sha256 != hashlib.sha256(data).hexdigest() or manifest.size_bytes != len(data):
        log.warning("shipped default model %s differs from its manifest; not imported", path)
        return
    now = now_ms()
    with engine.begin() as conn:
        model_repo.lock_task(conn, task)
        if model_repo.max_model_version(conn, task):
            return  # another replica was first
        model_repo.put_artifact(conn, manifest.sha256, data, now)
        model_repo.insert_version(conn, NewVersion(
            task=task, model_version=manifest.version, scope=model_repo.FLEET, sha256=manifest.sha256,
            size_bytes=manifest.size_bytes, manifest=manifest.model_dump(mode="json"), metrics=manifest.metrics,
            data_from_ts=None, data_to_ts=None, parent_version=None, created_ts=now, created_by=SHIPPED_DEFAULT,
            job_id=None, status="promoted", gate_passed=None, gate_reason=None, promoted_by=SHIPPED_DEFAULT,
            promoted_ts=now))
        model_repo.set_baseline(conn, task, model_repo.FLEET, manifest.version, now)
    log.info("imported the shipped %s model as version %d (fleet baseline)", task, manifest.version)


# candidates ----------------------------------------------------------------------------------


def _validated_manifest(c: CandidateIn, version: int, sha256: str) -> dict[str, Any]:
    raw = dict(c.manifest)
    raw["version"] = version
    try:
        manifest = ModelManifest.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise BadRequest(f"invalid manifest: {err['msg']}", f"manifest.{loc}" if loc else "manifest") from None
    if manifest.task != c.task:
        raise BadRequest(f"manifest.task is {manifest.task!r}, the version is for {c.task!r}", "manifest.task")
    if manifest.sha256 != sha256:
        raise BadRequest("manifest.sha256 differs from the sha256 of the tflite bytes", "manifest.sha256")
    if manifest.size_bytes != len(c.tflite):
        raise BadRequest(f"manifest.size_bytes is {manifest.size_bytes}, the tflite has {len(c.tflite)} bytes",
                         "manifest.size_bytes")
    return manifest.model_dump(mode="json")


def register_candidate(engine: Engine, c: CandidateIn) -> ModelVersionOut:
    """Store a candidate version (number = the task's highest + 1) and its artifact."""
    _check_task(c.task)
    if not _SCOPE.fullmatch(c.scope):
        raise BadRequest('scope must be "fleet" or "site:<site>"', "scope")
    if not c.tflite:
        raise BadRequest("the tflite model is empty", "tflite")
    sha256 = hashlib.sha256(c.tflite).hexdigest()
    now = now_ms()
    for attempt in range(3):
        try:
            with engine.begin() as conn:
                model_repo.lock_task(conn, c.task)
                version = model_repo.max_model_version(conn, c.task) + 1
                manifest = _validated_manifest(c, version, sha256)
                if c.parent_version is not None and model_repo.get_version(conn, c.task, c.parent_version) is None:
                    raise NotFound(f"parent {c.task} version {c.parent_version} does not exist", "parent_version")
                model_repo.put_artifact(conn, sha256, c.tflite, now)
                model_repo.insert_version(conn, NewVersion(
                    task=c.task, model_version=version, scope=c.scope, sha256=sha256, size_bytes=len(c.tflite),
                    manifest=manifest, metrics=dict(c.metrics), data_from_ts=c.data_from_ts,
                    data_to_ts=c.data_to_ts, parent_version=c.parent_version, created_ts=now,
                    created_by=c.created_by, job_id=c.job_id, status="candidate", gate_passed=c.gate_passed,
                    gate_reason=c.gate_reason, promoted_by=None, promoted_ts=None))
                row = model_repo.get_version(conn, c.task, version)
            assert row is not None
            log.info("registered %s candidate version %d (%s)", c.task, version, c.created_by)
            return _out(row)
        except IntegrityError:  # pragma: no cover - only without the advisory lock
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def deployed_model(engine: Engine, task: str, scope: str = "fleet") -> tuple[int, bytes, dict[str, Any]] | None:
    """(version, tflite bytes, manifest) of what ``scope`` runs outside rollouts (site falls back to fleet)."""
    _check_task(task)
    with reader(engine) as conn:
        version = model_repo.scope_baseline(conn, task, scope)
        row = None if version is None else model_repo.get_version(conn, task, version)
        data = None if row is None else model_repo.get_artifact(conn, row.sha256)
    if row is None or data is None:
        return None
    return int(row.model_version), data, dict(row.manifest)


# listing and promotion -----------------------------------------------------------------------


def list_versions(engine: Engine, task: str | None = None, status: str | None = None) -> list[ModelVersionOut]:
    with reader(engine) as conn:
        return [_out(row) for row in model_repo.list_versions(conn, task, status)]


def version_detail(engine: Engine, task: str, version: int) -> ModelVersionDetail:
    _check_task(task)
    with reader(engine) as conn:
        row = model_repo.get_version(conn, task, version)
        if row is None:
            raise NotFound(f"{task} model version {version} does not exist", "version")
        releases = [release_out(r) for r in model_repo.releases_of(conn, task, version)]
        pending = signing_repo.pending_metadata_versions(conn, task, version)
        scopes = model_repo.baseline_scopes(conn, task, version)
    return ModelVersionDetail(**_out(row).model_dump(), manifest=dict(row.manifest), releases=releases,
                              pending_signatures=pending, baseline_of=sorted(scopes))


def promote(engine: Engine, keyring: Keyring, task: str, version: int, by: str, force: bool = False
            ) -> ModelVersionDetail:
    """Approve a candidate: sign its release now (online key) or request offline signatures.

    Offline, two requests are written: the release itself and a rollback release to the model
    the candidate's scope runs now, held back until a rollback needs it (automatic rollback then
    works without the key online).
    """
    _check_task(task)
    now = now_ms()
    with engine.begin() as conn:
        model_repo.lock_task(conn, task)
        row = model_repo.get_version(conn, task, version)
        if row is None:
            raise NotFound(f"{task} model version {version} does not exist", "version")
        if row.status != "candidate":
            raise Conflict(f"{task} version {version} is {row.status}; only candidates can be promoted", "version")
        if row.gate_passed is False and not force:
            raise Conflict(f"the quality gate failed ({row.gate_reason}); pass force=true to promote anyway",
                           "force")
        model_repo.set_status(conn, task, version, "promoted", promoted_by=by, promoted_ts=now)
        issue_release(conn, keyring, task, version, rollback=False, held=False, purpose="release", now=now)
        previous = model_repo.scope_baseline(conn, task, row.scope)
        if keyring.signer is None and previous is not None and previous != version:
            issue_release(conn, keyring, task, previous, rollback=True, held=True, purpose="rollback", now=now)
    log.info("promoted %s version %d (by %s)", task, version, by)
    return version_detail(engine, task, version)


def artifact(engine: Engine, sha256: str) -> bytes:
    with reader(engine) as conn:
        data = model_repo.get_artifact(conn, sha256)
    if data is None:
        raise NotFound(f"no artifact {sha256}", "sha256")
    return data
