"""What the gateway tells about its models: the cloud report and the ``/status`` lines."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from edge_agent.updates.slot import ModelSlot
from edge_agent.updates.state import InstallState, TaskState
from protocols import GatewayHealth, ModelReport, TaskReport
from protocols.model_update import TaskState as ReportedState


class ModelTaskStatus(BaseModel):
    """One task's line in ``GET /status`` (``models``) and ``edgehouse-agent status``."""

    model_config = ConfigDict(extra="forbid")
    state: str
    version: int | None = None
    sha256: str | None = None  # first 12 hex digits
    metadata_version: int | None = None
    previous_version: int | None = None
    pending_version: int | None = None
    shadow_version: int | None = None
    rejected_code: str | None = None
    rejected_reason: str | None = None


def task_state(slot: ModelSlot, ts: TaskState | None, pending: int | None) -> ReportedState:
    if pending is not None:
        return "downloading"
    if slot.shadow_model() is not None:
        return "shadow"
    rejected = ts.rejected if ts is not None else None
    if rejected is not None and (rejected.metadata_version or 0) > (ts.last_metadata_version if ts else 0):
        return "rejected"
    return "running" if slot.running_model() is not None else "none"


def task_report(slot: ModelSlot, ts: TaskState | None, pending: int | None) -> TaskReport:
    running = slot.running_model()
    shadow = slot.shadow_model()
    stats = slot.model_stats()
    rejected = ts.rejected if ts is not None else None
    previous = ts.previous if ts is not None else None
    return TaskReport(
        task=slot.task,  # type: ignore[arg-type]
        state=task_state(slot, ts, pending),
        current_version=running.version if running else None,
        current_metadata_version=running.metadata_version if running else None,
        current_sha256=running.sha256 if running else None,
        previous_version=previous.version if previous else None,
        pending_version=pending,
        shadow_version=shadow.version if shadow else None,
        rejected_version=rejected.version if rejected else None,
        rejected_code=rejected.code if rejected else None,
        rejected_reason=rejected.reason if rejected else None,
        rejected_ts=rejected.ts if rejected else None,
        rollout_id=running.rollout_id if running else None,
        active_stats=stats.active,
        shadow_stats=stats.shadow,
        shadow_baseline_stats=stats.baseline,
        previous_stats=stats.previous,
    )


def build_report(
    gateway_id: str,
    agent_version: str,
    now_ms: int,
    slots: Mapping[str, ModelSlot],
    state: InstallState,
    pending: Mapping[str, int],
    trusted_keyids: tuple[str, ...],
    health: GatewayHealth | None = None,
) -> ModelReport:
    return ModelReport(
        gateway_id=gateway_id,
        ts=now_ms,
        agent_version=agent_version,
        trusted_keyids=trusted_keyids[:32],
        gateway=health,
        tasks=tuple(
            task_report(slot, state.tasks.get(task), pending.get(task)) for task, slot in slots.items()
        ),
    )


def status_lines(
    slots: Mapping[str, ModelSlot], state: InstallState, pending: Mapping[str, int]
) -> dict[str, ModelTaskStatus]:
    out = {}
    for task, slot in slots.items():
        ts = state.tasks.get(task)
        running = slot.running_model()
        shadow = slot.shadow_model()
        rejected = ts.rejected if ts is not None else None
        out[task] = ModelTaskStatus(
            state=task_state(slot, ts, pending.get(task)),
            version=running.version if running else None,
            sha256=running.sha256[:12] if running else None,
            metadata_version=running.metadata_version if running else None,
            previous_version=ts.previous.version if ts is not None and ts.previous else None,
            pending_version=pending.get(task),
            shadow_version=shadow.version if shadow else None,
            rejected_code=rejected.code if rejected else None,
            rejected_reason=rejected.reason if rejected else None,
        )
    if state.keys.rejected is not None:
        out["keys"] = ModelTaskStatus(
            state=f"rotation {state.keys.rotation_version}",
            rejected_code=state.keys.rejected.code,
            rejected_reason=state.keys.rejected.reason,
        )
    return out
