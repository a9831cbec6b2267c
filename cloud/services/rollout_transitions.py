"""State transitions of a rollout shared by the admin actions and the controller.

The only writer of ``rollouts``/``rollout_members`` after creation: every function runs in the caller's writing
transaction and logs an event with its reason. :class:`RolloutParams` reads a rollout's stored parameters.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, Row

from cloud.db import model_repo, rollout_repo, signing_repo
from cloud.model_schemas import Gates
from cloud.services import model_signing
from cloud.services.model_signing import Keyring

log = logging.getLogger(__name__)

#: Rollouts whose candidate is served to the members of reached stages.
OPEN_STATES: Final = ("running", "paused", "halted")


class RolloutParams(BaseModel):
    """A rollout's ``params`` column, typed (written once by ``rollouts.create``)."""

    model_config = ConfigDict(frozen=True)

    canary_fraction: float
    waves: tuple[float, ...]
    shadow: bool
    gates: Gates

    @classmethod
    def of(cls, r: Row[Any]) -> RolloutParams:
        return cls.model_validate(r.params)


def stage_name(stage: int) -> str:
    return "canary" if stage == 0 else f"wave {stage}"


def add_event(conn: Connection, rollout_id: int, kind: str, reason: str, now: int, stage: int | None = None) -> None:
    rollout_repo.add_event(conn, rollout_id, kind, reason, now, stage)
    log.info("rollout %d: %s (%s)", rollout_id, kind, reason)


def set_state(conn: Connection, r: Row[Any], state: str, kind: str, reason: str, now: int, **extra: Any) -> None:
    rollout_repo.update(conn, r.rollout_id, state=state, reason=reason, updated_ts=now, **extra)
    add_event(conn, r.rollout_id, kind, reason, now, r.stage)


def start_stage(conn: Connection, rollout_id: int, stage: int, shadow: bool, now: int) -> None:
    """Make ``stage`` the current one (its clock starts now) and log which gateways it reaches."""
    rollout_repo.update(conn, rollout_id, stage=stage, phase="shadow" if shadow else "active",
                        stage_started_ts=now, updated_ts=now)
    names = rollout_repo.stage_gateways(conn, rollout_id, stage)
    add_event(conn, rollout_id, "stage_started",
              f"{stage_name(stage)} ({', '.join(names)}) starts{' in shadow' if shadow else ''}", now, stage)


def pass_shadow(conn: Connection, r: Row[Any], reason: str, now: int) -> None:
    """The current stage leaves its shadow phase: every member now runs the candidate."""
    rollout_repo.update(conn, r.rollout_id, phase="active", updated_ts=now)
    add_event(conn, r.rollout_id, "shadow_passed", reason, now, r.stage)


def set_member_gates(conn: Connection, rollout_id: int, verdicts: dict[str, tuple[str, str]],
                     current: list[Row[Any]]) -> None:
    """Store each member's gate verdict and detail (only where they changed)."""
    for m in current:
        verdict = verdicts.get(m.gateway_id)
        if verdict is not None and (m.gate, m.detail) != verdict:
            rollout_repo.set_member_gate(conn, rollout_id, m.gateway_id, verdict[0], verdict[1])


def lock_rollout(conn: Connection, rollout_id: int) -> Row[Any] | None:
    """The rollout row, locked for this transaction (PostgreSQL; SQLite writers are serialised)."""
    return rollout_repo.get(conn, rollout_id, lock=True)


def members(conn: Connection, rollout_id: int, max_stage: int | None = None) -> list[Row[Any]]:
    return rollout_repo.members(conn, rollout_id, max_stage)


def _retire_if_unused(conn: Connection, task: str, version: int | None) -> None:
    if version is None:
        return
    if not model_repo.version_in_use(conn, task, version):
        row = model_repo.get_version(conn, task, version)
        if row is not None and row.status == "promoted":
            model_repo.set_status(conn, task, version, "retired")


def complete(conn: Connection, r: Row[Any], now: int) -> None:
    """Every stage done: the candidate becomes the scope's baseline (or the group's pin).

    Its members run the candidate from now on: their pins go, and a fleet rollout also replaces
    the own baselines of the sites it reached. Otherwise those gateways would fall back to their
    site's older model, an unrequested downgrade that they refuse (its release is older than the
    candidate's, a replay to them).
    """
    ids = [m.gateway_id for m in members(conn, r.rollout_id)]
    superseded: dict[str, int] = {}
    if r.group_name is None:
        model_repo.set_baseline(conn, r.task, r.scope, r.model_version, now)
        model_repo.clear_pins(conn, r.task, ids)
        what = f"version {r.model_version} is now the {r.scope} baseline"
        if r.scope == model_repo.FLEET:
            sites = rollout_repo.gateway_sites(conn)
            superseded = model_repo.drop_site_baselines(conn, r.task, {sites[g] for g in ids if g in sites})
            if superseded:
                what += " and replaces " + ", ".join(f"the {s} baseline (version {v})" for s, v in superseded.items())
    else:
        for gw in ids:
            model_repo.set_pin(conn, gw, r.task, r.model_version, now)
        what = f"version {r.model_version} is pinned on the {len(ids)} gateways of group {r.group_name}"
    set_state(conn, r, "completed", "completed", f"all {r.n_stages} stages done: {what}", now)
    previous_versions = {m.previous_version for m in members(conn, r.rollout_id)} | {r.previous_version}
    for previous in previous_versions | set(superseded.values()):
        _retire_if_unused(conn, r.task, previous)


def abort(conn: Connection, r: Row[Any], reason: str, now: int) -> None:
    """Stop advancing and leave every gateway on what it runs: pin the candidate where it is active."""
    for m in members(conn, r.rollout_id, r.stage):
        if m.stage < r.stage or r.phase == "active":
            model_repo.set_pin(conn, m.gateway_id, r.task, r.model_version, now)
    set_state(conn, r, "aborted", "aborted", reason, now)


def _rollback_release(conn: Connection, keyring: Keyring, r: Row[Any], target: int, now: int) -> str:
    """Make a rollback release to ``target`` servable: pre-signed, signed now, or requested offline."""
    above = signing_repo.top_release_md(conn, r.task, r.model_version)
    md = model_signing.publish_held_rollback(conn, r.task, target, above)
    if md is not None:
        return f"pre-signed rollback release md={md} to version {target}"
    if keyring.signer is not None:
        issued = model_signing.issue_release(conn, keyring, r.task, target, rollback=True, held=False,
                                             purpose="rollback", now=now)
        return f"signed rollback release md={issued.metadata_version} to version {target}"
    if model_signing.release_pending(conn, r.task, target, rollback=True):
        return f"rollback release to version {target} awaits its offline signature"
    issued = model_signing.issue_release(conn, keyring, r.task, target, rollback=True, held=False,
                                         purpose="rollback", now=now)
    return f"rollback release md={issued.metadata_version} to version {target} awaits its offline signature"


def rollback(conn: Connection, keyring: Keyring, r: Row[Any], reason: str, now: int) -> None:
    """Send every member back to the model it ran before; the candidate is rejected for good."""
    ms = members(conn, r.rollout_id)
    if r.state == "completed" and r.group_name is None and r.previous_version is not None:
        model_repo.set_baseline(conn, r.task, r.scope, r.previous_version, now)
    sites = rollout_repo.gateway_sites(conn)
    targets = {m.previous_version for m in ms if m.previous_version is not None}
    if r.previous_version is not None:
        targets.add(r.previous_version)
    targets.discard(r.model_version)
    notes = [_rollback_release(conn, keyring, r, target, now) for target in sorted(targets)]
    for m in ms:
        site = sites.get(m.gateway_id)
        baseline = None if site is None else model_repo.scope_baseline(conn, r.task, model_repo.site_scope(site))
        if m.previous_version is None or m.previous_version in (baseline, r.model_version):
            model_repo.clear_pins(conn, r.task, [m.gateway_id])
        else:
            model_repo.set_pin(conn, m.gateway_id, r.task, m.previous_version, now)
    for target in targets:
        row = model_repo.get_version(conn, r.task, target)
        if row is not None and row.status == "retired":
            model_repo.set_status(conn, r.task, target, "promoted")
    model_repo.set_status(conn, r.task, r.model_version, "rejected")
    set_state(conn, r, "rolled_back", "rolled_back", f"{reason}; {'; '.join(notes)}" if notes else reason, now)


def in_use(conn: Connection) -> set[tuple[str, int]]:
    """(task, version) pairs served now: baselines, pins and candidates of open rollouts."""
    return model_repo.baseline_and_pinned_versions(conn) | rollout_repo.candidates_in_states(conn, OPEN_STATES)
