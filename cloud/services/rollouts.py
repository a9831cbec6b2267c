"""Staged rollouts of a promoted model version: creation, status, admin actions, gateway groups.

Members are the registered gateways of the scope (a site, or every gateway), optionally only
those of one group, assigned to stages by the sorted sha256 of ``"{rollout_id}:{gateway_id}"``:
a canary (``canary_fraction`` of them, at least one), then cumulative ``waves``. The
:class:`~cloud.services.rollout_controller.RolloutController` advances running rollouts.

States: ``running`` → ``completed`` | ``rolled_back`` | ``halted`` (stage timeout; resume or
roll back) | ``paused`` (admin) | ``aborted`` (admin: stop advancing, leave gateways as they are).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from sqlalchemy import Connection, Engine, Row

from cloud.clock import now_ms
from cloud.db import model_repo, repo, rollout_repo
from cloud.db.engine import reader
from cloud.db.rollout_repo import NewMember, NewRollout
from cloud.model_schemas import (
    GatewayGroupOut,
    RolloutCreate,
    RolloutEventOut,
    RolloutMemberOut,
    RolloutOut,
    RolloutStageOut,
    RolloutStatus,
)
from cloud.services import rollout_transitions as tr
from cloud.services.errors import Conflict, NotFound
from cloud.services.model_desired import report_versions, rollout_mode, task_reports
from cloud.services.model_signing import Keyring
from protocols.model_update import supports_task


def stage_sizes(n: int, canary_fraction: float, waves: list[float]) -> list[int]:
    """Members per stage for ``n`` gateways (empty stages dropped)."""
    ends = [min(n, max(1, int(canary_fraction * n + 0.5)))]
    for w in waves:
        ends.append(max(ends[-1], min(n, math.ceil(w * n - 1e-9))))
    ends[-1] = n
    sizes = [b - a for a, b in zip([0, *ends], ends, strict=False)]
    return [s for s in sizes if s > 0]


def assign_stages(rollout_id: int, gateway_ids: list[str], canary_fraction: float, waves: list[float]
                  ) -> dict[str, int]:
    order = sorted(gateway_ids, key=lambda g: hashlib.sha256(f"{rollout_id}:{g}".encode()).hexdigest())
    out: dict[str, int] = {}
    start = 0
    for stage, size in enumerate(stage_sizes(len(order), canary_fraction, waves)):
        for gw in order[start:start + size]:
            out[gw] = stage
        start += size
    return out


def create(engine: Engine, req: RolloutCreate, by: str) -> RolloutStatus:
    now = now_ms()
    with engine.begin() as conn:
        model_repo.lock_task(conn, req.task)
        version = model_repo.get_version(conn, req.task, req.model_version)
        if version is None:
            raise NotFound(f"{req.task} model version {req.model_version} does not exist", "model_version")
        if version.status != "promoted":
            raise Conflict(f"version {req.model_version} is {version.status}; promote it first", "model_version")
        if model_repo.latest_release(conn, req.task, req.model_version) is None:
            raise Conflict(f"version {req.model_version} has no signed release yet (sign the pending requests "
                           "with `edgehouse models sign`)", "model_version")
        busy = rollout_repo.first_in_states(conn, req.task, tr.OPEN_STATES)
        if busy is not None:
            raise Conflict(f"rollout {busy} of {req.task} is still open; finish, abort or roll it "
                           "back first", "task")
        scope = req.scope or version.scope
        previous = model_repo.scope_baseline(conn, req.task, scope)
        if previous == req.model_version and req.group is None:
            raise Conflict(f"version {req.model_version} already is the {scope} baseline", "model_version")
        eligible = rollout_repo.eligible_gateways(conn, scope, req.group)
        if not eligible:
            raise Conflict(f"no registered gateway in scope {scope}"
                           + (f" and group {req.group}" if req.group else ""), "group" if req.group else "scope")
        # A task newer than some agents (device_anomaly): only gateways that report supporting it.
        report_v = report_versions(conn, [g for g, _ in eligible])
        eligible = [(g, site) for g, site in eligible if supports_task(report_v.get(g), req.task)]
        if not eligible:
            raise Conflict(f"no gateway in scope {scope} reports supporting {req.task} (model_report v3 "
                           "or later: upgrade the agents first)", "task")
        params = {"canary_fraction": req.canary_fraction, "waves": req.waves, "shadow": req.shadow,
                  "gates": req.gates.model_dump()}
        rollout_id = rollout_repo.insert_rollout(conn, NewRollout(
            task=req.task, model_version=req.model_version, previous_version=previous, scope=scope,
            group_name=req.group, state="running", stage=0, n_stages=1,
            phase="shadow" if req.shadow else "active", stage_started_ts=now, params=params, reason=None,
            created_by=by, created_ts=now, updated_ts=now))
        stages = assign_stages(rollout_id, [g for g, _ in eligible], req.canary_fraction, req.waves)
        rollout_repo.insert_members(conn, [
            NewMember(rollout_id=rollout_id, gateway_id=gw, stage=stages[gw], gate="pending", detail=None,
                      previous_version=model_repo.gateway_version(conn, gw, site, req.task))
            for gw, site in eligible
        ])
        n_stages = max(stages.values()) + 1
        rollout_repo.update(conn, rollout_id, n_stages=n_stages)
        tr.add_event(conn, rollout_id, "created",
                     f"{req.task} version {req.model_version} over {previous} to {len(eligible)} gateways of "
                     f"{scope}{f' group {req.group}' if req.group else ''} in {n_stages} stages", now)
        tr.start_stage(conn, rollout_id, 0, req.shadow, now)
    return status(engine, rollout_id)


def _out(r: Row[Any]) -> RolloutOut:
    p = tr.RolloutParams.of(r)
    return RolloutOut(
        rollout_id=r.rollout_id, task=r.task, model_version=r.model_version, previous_version=r.previous_version,
        scope=r.scope, group=r.group_name, state=r.state, stage=r.stage, n_stages=r.n_stages, phase=r.phase,
        stage_started_ts=r.stage_started_ts, shadow=p.shadow, canary_fraction=p.canary_fraction,
        waves=list(p.waves), gates=p.gates, reason=r.reason, created_by=r.created_by,
        created_ts=r.created_ts, updated_ts=r.updated_ts)


def _get(conn: Connection, rollout_id: int) -> Row[Any]:
    r = rollout_repo.get(conn, rollout_id)
    if r is None:
        raise NotFound(f"rollout {rollout_id} does not exist", "rollout_id")
    return r


def list_rollouts(engine: Engine, task: str | None = None, state: str | None = None) -> list[RolloutOut]:
    with reader(engine) as conn:
        return [_out(r) for r in rollout_repo.list_rollouts(conn, task, state)]


def _stage_state(r: Row[Any], index: int) -> str:
    if r.state == "completed" or index < r.stage:
        return "done"
    if index > r.stage:
        return "pending"
    return str(r.phase)


def status(engine: Engine, rollout_id: int) -> RolloutStatus:
    with reader(engine) as conn:
        r = _get(conn, rollout_id)
        ms = tr.members(conn, rollout_id)
        reports = task_reports(conn, [m.gateway_id for m in ms], r.task)
        events = rollout_repo.events(conn, rollout_id)
    serving = r.state in tr.OPEN_STATES
    members = [
        RolloutMemberOut(
            gateway_id=m.gateway_id, stage=m.stage, previous_version=m.previous_version, gate=m.gate,
            detail=m.detail,
            current_version=reports[m.gateway_id].current_version if m.gateway_id in reports else None,
            mode=rollout_mode(r, m.stage) if serving and m.stage <= r.stage else None)  # type: ignore[arg-type]
        for m in ms
    ]
    stages = [
        RolloutStageOut(index=i, name=tr.stage_name(i), gateways=[m.gateway_id for m in ms if m.stage == i],
                        state=_stage_state(r, i))  # type: ignore[arg-type]
        for i in range(r.n_stages)
    ]
    return RolloutStatus(**_out(r).model_dump(), stages=stages, members=members,
                         events=[RolloutEventOut(ts=e.ts, kind=e.kind, stage=e.stage, reason=e.reason)
                                 for e in events])


# admin actions -------------------------------------------------------------------------------


def _locked(conn: Connection, rollout_id: int, allowed: tuple[str, ...], action: str) -> Row[Any]:
    r = tr.lock_rollout(conn, rollout_id)
    if r is None:
        raise NotFound(f"rollout {rollout_id} does not exist", "rollout_id")
    if r.state not in allowed:
        raise Conflict(f"rollout {rollout_id} is {r.state}; cannot {action} it", "rollout_id")
    return r


def pause(engine: Engine, rollout_id: int, by: str, reason: str | None) -> RolloutStatus:
    with engine.begin() as conn:
        r = _locked(conn, rollout_id, ("running",), "pause")
        tr.set_state(conn, r, "paused", "paused", reason or f"paused by {by}", now_ms())
    return status(engine, rollout_id)


def resume(engine: Engine, rollout_id: int, by: str, reason: str | None) -> RolloutStatus:
    """Continue a paused or halted rollout; the current stage's clock starts again."""
    now = now_ms()
    with engine.begin() as conn:
        r = _locked(conn, rollout_id, ("paused", "halted"), "resume")
        tr.set_state(conn, r, "running", "resumed", reason or f"resumed by {by}", now, stage_started_ts=now)
    return status(engine, rollout_id)


def abort(engine: Engine, rollout_id: int, by: str, reason: str | None) -> RolloutStatus:
    with engine.begin() as conn:
        r = _locked(conn, rollout_id, tr.OPEN_STATES, "abort")
        tr.abort(conn, r, reason or f"aborted by {by}", now_ms())
    return status(engine, rollout_id)


def rollback(engine: Engine, keyring: Keyring, rollout_id: int, by: str, reason: str | None) -> RolloutStatus:
    with engine.begin() as conn:
        r = _locked(conn, rollout_id, (*tr.OPEN_STATES, "aborted", "completed"), "roll back")
        tr.rollback(conn, keyring, r, reason or f"rolled back by {by}", now_ms())
    return status(engine, rollout_id)


# gateway groups ------------------------------------------------------------------------------


def set_group(engine: Engine, gateway_id: str, group: str | None) -> GatewayGroupOut:
    with engine.begin() as conn:
        if repo.get_gateway(conn, gateway_id) is None:
            raise NotFound(f"gateway {gateway_id!r} is not registered", "gateway_id")
        rollout_repo.set_group(conn, gateway_id, group, now_ms())
    return GatewayGroupOut(gateway_id=gateway_id, group=group)
