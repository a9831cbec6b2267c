"""Models and rollouts (admin): the registry with metrics and gate verdicts, rollouts, and one rollout's
stages, members and events, with pause / resume / abort / rollback behind a confirmation."""

from __future__ import annotations

from typing import Any, Final

from fastapi.responses import HTMLResponse
from sqlalchemy import Engine

from cloud.auth import Principal
from cloud.console.html import Html, esc, join, link, page, table, tag, when
from cloud.model_schemas import RolloutOut, RolloutStatus
from cloud.services import model_registry, rollouts

#: Which actions a rollout in each state allows (the service refuses the others with 409 anyway).
ACTIONS: Final = {
    "running": ("pause", "abort", "rollback"),
    "paused": ("resume", "abort", "rollback"),
    "halted": ("resume", "abort", "rollback"),
    "completed": ("rollback",),
}
_WHAT: Final = {"pause": "Stop advancing for now; gateways keep their desired state.",
                "resume": "Continue; the current stage's clock restarts.",
                "abort": "Stop for good and leave every gateway on what it runs now.",
                "rollback": "Send every member back to its previous model; the candidate is rejected."}


def _gate(passed: bool | None, reason: str | None) -> Html:
    if passed is None:
        return tag("span", "not gated", class_="badge")
    return tag("span", "passed" if passed else "failed", class_="badge ok" if passed else "badge bad", title=reason)


def _metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())[:8])


def _rollout_row(r: RolloutOut) -> list[Any]:
    return [link(f"/console/rollouts/{r.rollout_id}", f"#{r.rollout_id}"), r.task, f"v{r.model_version}",
            f"v{r.previous_version}" if r.previous_version else "-", r.scope, r.group or "every gateway",
            tag("span", r.state, class_=f"badge ro-{r.state}"), f"{r.stage + 1}/{r.n_stages} ({r.phase})",
            when(r.updated_ts), r.reason or ""]


def models_page(engine: Engine, principal: Principal) -> HTMLResponse:
    versions = model_registry.list_versions(engine)
    registry = table(["Task", "Version", "Scope", "Status", "Gate", "Gate reason", "Metrics", "Parent", "Created",
                      "Promoted"], [
        [v.task, f"v{v.model_version}", v.scope, v.status, _gate(v.gate_passed, v.gate_reason), v.gate_reason or "",
         _metrics(v.metrics), f"v{v.parent_version}" if v.parent_version else "-", when(v.created_ts),
         when(v.promoted_ts) if v.promoted_ts else "-"] for v in versions], id="registry", class_="grid")
    rollout_list = table(["Rollout", "Task", "Version", "Previous", "Scope", "Group", "State", "Stage", "Updated",
                          "Reason"], (_rollout_row(r) for r in rollouts.list_rollouts(engine)), id="rollouts",
                         class_="grid")
    body = join([tag("h2", "Registry"), registry, tag("h2", "Rollouts"), rollout_list])
    return page("Models and rollouts", principal, "models", body)


def _confirm_dialog() -> Html:
    return Html("""<dialog id="confirm-dialog"><form method="dialog" data-form="rollout-action">
<h2 data-title>Confirm</h2><p data-what></p>
<label>Reason <input name="reason" maxlength="500" placeholder="why (kept in the events)"></label>
<menu><button value="cancel" formnovalidate>Cancel</button><button value="ok" data-confirm>Confirm</button></menu>
</form></dialog>""")


def rollout_page(engine: Engine, principal: Principal, rollout_id: int) -> HTMLResponse:
    r: RolloutStatus = rollouts.status(engine, rollout_id)
    buttons = join(tag("button", action.capitalize(), type="button", data_action="rollout", data_op=action,
                       data_rollout=str(rollout_id), data_what=_WHAT[action],
                       class_="danger" if action in ("abort", "rollback") else None)
                   for action in ACTIONS.get(r.state, ()))
    head = table(["Task", "Version", "Previous", "State", "Stage", "Shadow first", "Canary", "Waves", "Created by"],
                 [[r.task, f"v{r.model_version}", f"v{r.previous_version}" if r.previous_version else "-",
                   tag("span", r.state, class_=f"badge ro-{r.state}", id="rollout-state"),
                   f"{r.stage + 1}/{r.n_stages} ({r.phase})", "yes" if r.shadow else "no", f"{r.canary_fraction:.0%}",
                   ", ".join(f"{w:.0%}" for w in r.waves), r.created_by]], class_="facts")
    stages = table(["Stage", "State", "Gateways"], [
        [s.name, tag("span", s.state, class_=f"badge st-{s.state}"), len(s.gateways)] for s in r.stages],
        id="stages", class_="grid")
    members = table(["Gateway", "Stage", "Gate", "Detail", "Running", "Mode", "Previous"], [
        [link(f"/console/gateways/{m.gateway_id}", m.gateway_id), m.stage + 1,
         tag("span", m.gate, class_=f"badge gate-{m.gate}"), m.detail or "",
         f"v{m.current_version}" if m.current_version else "-", m.mode or "-",
         f"v{m.previous_version}" if m.previous_version else "-"] for m in r.members], id="members", class_="grid")
    events = table(["When", "Event", "Stage", "Reason"], [
        [when(e.ts), e.kind, "-" if e.stage is None else e.stage + 1, e.reason] for e in r.events],
        id="events", class_="grid")
    body = join([head, tag("p", buttons, class_="actions"), tag("p", esc(r.reason or ""), class_="hint"),
                 tag("h2", "Stages"), stages, tag("h2", "Members"), members, tag("h2", "Events"), events,
                 _confirm_dialog()])
    return page(f"Rollout #{rollout_id}", principal, "models", body)
