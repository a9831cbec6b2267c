"""The rollout controller: a thread that advances running rollouts every ``rollout_tick_s``.

Each pass, for every running rollout (in its own transaction, the rollout row locked so that
replicas never act twice):

1. a member of a reached stage whose report rejects the candidate → automatic rollback;
2. current stage in shadow phase: every member's shadow gate (``rollout_gates``); one failing
   → automatic rollback; all passing → the stage switches to active;
3. current stage active: done when every member runs the candidate (and, for rollouts without
   shadow, passes the active-vs-previous gate) and ``min_stage_duration_s`` passed → next stage,
   or the rollout completes;
4. a stage older than ``stage_timeout_s`` → halted (not rolled back), naming who it waits for.

Then, with an online key, releases in use that expire within a quarter of their lifetime are
re-signed. A :class:`cloud.background.Loop`: :meth:`RolloutController.start`, :meth:`stop` sets the stop
event and joins; errors are logged, counted in ``health`` and backed off.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Connection, Engine

from cloud.background import Loop, LoopHealth
from cloud.clock import now_ms
from cloud.db import rollout_repo
from cloud.db.engine import reader
from cloud.services import rollout_transitions as tr
from cloud.services.model_desired import task_reports
from cloud.services.model_signing import Keyring, due_for_resign, resign_expiring
from cloud.services.rollout_gates import GateResult, evaluate, rejection

log = logging.getLogger(__name__)


def _set_gates(conn: Connection, r: Any, members: list[Any], results: dict[str, GateResult]) -> None:
    tr.set_member_gates(conn, r.rollout_id, {gw: (res.verdict, res.detail) for gw, res in results.items()}, members)


def step(conn: Connection, keyring: Keyring, rollout_id: int, now: int) -> None:
    """Advance one rollout as far as the reports allow (one transition per call at most)."""
    r = tr.lock_rollout(conn, rollout_id)
    if r is None or r.state != "running":
        return
    v = int(r.model_version)
    params = tr.RolloutParams.of(r)
    gates, shadow = params.gates, params.shadow
    reached = tr.members(conn, rollout_id, r.stage)
    reports = task_reports(conn, [m.gateway_id for m in reached], r.task)
    for m in reached:
        why = rejection(reports.get(m.gateway_id), v)
        if why is not None:
            _set_gates(conn, r, [m], {m.gateway_id: GateResult("fail", f"rejected: {why}")})
            tr.rollback(conn, keyring, r, f"gateway {m.gateway_id} rejected {r.task} version {v}: {why}", now)
            return
    current = [m for m in reached if m.stage == r.stage]
    name = tr.stage_name(r.stage)
    results: dict[str, GateResult] = {}
    if r.phase == "shadow" or not shadow:
        results = {m.gateway_id: evaluate(r.task, v, reports.get(m.gateway_id), r.phase, gates) for m in current}
    else:
        for m in current:
            rep = reports.get(m.gateway_id)
            running = None if rep is None else rep.current_version
            results[m.gateway_id] = GateResult("pass" if running == v else "pending", f"running version {running}")
    _set_gates(conn, r, current, results)
    failed = [(gw, res) for gw, res in results.items() if res.verdict == "fail"]
    if failed:
        gw, res = failed[0]
        tr.rollback(conn, keyring, r, f"{name} {r.phase} gate failed on gateway {gw}: {res.detail}", now)
        return
    passed = all(res.verdict == "pass" for res in results.values())
    elapsed_ms = now - r.stage_started_ts
    if r.phase == "shadow" and passed:
        detail = "; ".join(f"{gw}: {res.detail}" for gw, res in sorted(results.items()))
        tr.pass_shadow(conn, r, f"{name}: every member passed the shadow gate ({detail})", now)
        return
    if r.phase == "active":
        running = all(reports.get(m.gateway_id) is not None
                      and reports[m.gateway_id].current_version == v for m in current)
        if running and passed and elapsed_ms >= gates.min_stage_duration_s * 1000:
            tr.add_event(conn, rollout_id, "stage_done",
                         f"{name}: {len(current)} gateways run version {v}", now, r.stage)
            if r.stage + 1 >= r.n_stages:
                tr.complete(conn, r, now)
                return
            tr.start_stage(conn, rollout_id, r.stage + 1, shadow, now)
            return
    if elapsed_ms > gates.stage_timeout_s * 1000:
        waiting = [f"{gw} ({res.detail})" for gw, res in sorted(results.items()) if res.verdict != "pass"]
        tr.set_state(conn, r, "halted", "halted",
                     f"{name} timed out after {gates.stage_timeout_s:g} s in {r.phase} phase; waiting for "
                     f"{', '.join(waiting) or 'the minimum stage duration'}", now)


class RolloutController:
    """Runs :func:`step` over running rollouts and re-signs expiring releases, until stopped."""

    def __init__(self, engine: Engine, keyring: Keyring, tick_s: float) -> None:
        if tick_s <= 0:
            raise ValueError("tick_s: must be positive")
        self._engine = engine
        self._keyring = keyring
        self._loop = Loop("rollout-controller", tick_s, self.tick)

    @property
    def health(self) -> LoopHealth:
        return self._loop.health

    def start(self) -> None:
        self._loop.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._loop.stop(timeout_s)

    def tick(self, now: int | None = None) -> None:
        """One pass over every running rollout, then the re-signing of expiring releases."""
        now = now_ms() if now is None else now
        with reader(self._engine) as conn:
            ids = rollout_repo.ids_in_state(conn, "running")
        for rollout_id in ids:
            if self._loop.stopping.is_set():
                return
            with self._engine.begin() as conn:
                step(conn, self._keyring, rollout_id, now)
        if self._keyring.signer is not None:
            with reader(self._engine) as conn:
                due = due_for_resign(conn, self._keyring, tr.in_use(conn), now)
            if due:
                with self._engine.begin() as conn:
                    resign_expiring(conn, self._keyring, due, now)
