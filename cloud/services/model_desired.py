"""What each gateway should run (``DesiredModels``) and what it says it runs (``ModelReport``).

Per task, a gateway that is a member of a reached stage of an open rollout gets the candidate's
latest signed release (``shadow`` while its stage is in the shadow phase, then ``active``);
every other gateway gets the latest served release of the version it runs outside rollouts (its
pin, else its site's baseline, else the fleet's). A version that never had a signed release
(the shipped default) yields no entry: the gateway keeps its shipped model. Every accepted key
rotation goes to every gateway.

The ETag is the sha256 of the canonical JSON of the document without ``generated_ts``, so it
changes exactly when what the gateway must do changes.

Fleets mix agent releases: a task added after the first release of the protocol
(``device_anomaly``) is offered only to a gateway whose latest model report is v3 or later
(``protocols.supports_task``), in a desired_models v2 document; every other gateway gets v1
without it, a document its agent accepts.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

from sqlalchemy import Connection, Engine

from cloud.clock import now_ms
from cloud.db import model_repo, repo, rollout_repo
from cloud.db.engine import reader
from cloud.db.model_repo import ReportRow
from cloud.services.errors import NotFound
from cloud.services.model_signing import parse_release, rotations
from cloud.services.rollout_transitions import OPEN_STATES
from protocols.model_update import (
    ARTIFACT_PATH,
    DESIRED_V_FOR_NEW_TASKS,
    MODEL_TASKS,
    REPORT_V_FOR_NEW_TASKS,
    DesiredModel,
    DesiredModels,
    ModelReport,
    SignedRelease,
    TaskReport,
    supports_task,
)

MAX_ROTATIONS: Final = 32


def _desired(conn: Connection, release_row: Any, mode: str = "active", rollout_id: int | None = None
             ) -> DesiredModel:
    doc: SignedRelease = parse_release(release_row.document)
    return DesiredModel(task=doc.signed.task, release=doc, mode=mode,  # type: ignore[arg-type]
                        artifact_path=ARTIFACT_PATH.format(sha256=doc.signed.artifact.sha256),
                        rollout_id=rollout_id)


def rollout_mode(r: Any, member_stage: int) -> str:
    """``shadow`` for members of the current stage while it is in its shadow phase, else ``active``."""
    return "shadow" if member_stage == r.stage and r.phase == "shadow" else "active"


def _task_model(conn: Connection, gateway_id: str, site: str, task: str) -> DesiredModel | None:
    hit = rollout_repo.reached_membership(conn, gateway_id, task, OPEN_STATES)
    if hit is not None:
        release = model_repo.latest_release(conn, task, hit.model_version)
        if release is not None:
            return _desired(conn, release, rollout_mode(hit, hit.member_stage), hit.rollout_id)
    version = model_repo.gateway_version(conn, gateway_id, site, task)
    release = None if version is None else model_repo.latest_release(conn, task, version)
    return None if release is None else _desired(conn, release)


def desired_models(engine: Engine, gateway_id: str) -> DesiredModels:
    with reader(engine) as conn:
        gw = repo.get_gateway(conn, gateway_id)
        if gw is None:
            raise NotFound(f"gateway {gateway_id!r} is not registered", "gateway_id")
        report_v = report_versions(conn, [gateway_id]).get(gateway_id)
        tasks = [t for t in MODEL_TASKS if supports_task(report_v, t)]
        models = [m for task in tasks if (m := _task_model(conn, gateway_id, gw.site, task)) is not None]
        keys = rotations(conn)[-MAX_ROTATIONS:]
    v = DESIRED_V_FOR_NEW_TASKS if report_v is not None and report_v >= REPORT_V_FOR_NEW_TASKS else 1
    return DesiredModels(v=v, gateway_id=gateway_id, generated_ts=now_ms(), models=tuple(models),
                         key_rotations=tuple(keys))


def report_versions(conn: Connection, gateway_ids: list[str]) -> dict[str, int]:
    """The ``v`` of each gateway's latest model report (gateways that never reported are absent)."""
    if not gateway_ids:
        return {}
    out: dict[str, int] = {}
    for gateway_id, document in model_repo.report_documents(conn, gateway_ids):
        doc = document if isinstance(document, dict) else json.loads(document)
        out[gateway_id] = int(doc.get("v", 1))
    return out


def etag(desired: DesiredModels) -> str:
    """A strong ETag over the content (``generated_ts`` left out)."""
    data = desired.model_dump(mode="json", by_alias=True, exclude={"generated_ts"})
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f'"{digest[:40]}"'


# reports -------------------------------------------------------------------------------------


def store_report(engine: Engine, report: ModelReport) -> None:
    """Keep the gateway's newest report (an older one arriving late is ignored)."""
    now = now_ms()
    with engine.begin() as conn:
        if repo.get_gateway(conn, report.gateway_id) is None:
            raise NotFound(f"gateway {report.gateway_id!r} is not registered", "gateway_id")
        stored_ts = model_repo.report_ts(conn, report.gateway_id)
        if stored_ts is not None and stored_ts > report.ts:
            return
        health = report.gateway
        model_repo.put_report(conn, ReportRow(
            gateway_id=report.gateway_id, ts=report.ts, received_ts=now,
            report=json.loads(report.model_dump_json(by_alias=True)),
            outbox_depth=None if health is None else health.outbox_depth,
            oldest_unsynced_ts=None if health is None else health.oldest_unsynced_ts,
            mqtt_connected=None if health is None else health.mqtt_connected,
            rejected_updates=sum(1 for t in report.tasks if t.rejected_version is not None)))


def task_reports(conn: Connection, gateway_ids: list[str], task: str) -> dict[str, TaskReport]:
    """The latest report's entry for ``task`` of each gateway that has one."""
    if not gateway_ids:
        return {}
    out: dict[str, TaskReport] = {}
    for gateway_id, document in model_repo.report_documents(conn, gateway_ids):
        report = ModelReport.model_validate_json(json.dumps(document))
        for entry in report.tasks:
            if entry.task == task:
                out[gateway_id] = entry
    return out
