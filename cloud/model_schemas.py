"""Request and response bodies of the model registry, signing and rollout API."""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from cloud.schemas import MAX_API_INT, GatewayIdStr, TsField, _Request
from protocols.model_update import ModelRelease

ModelStatus = Literal["candidate", "promoted", "rejected", "retired"]
RolloutState = Literal["running", "paused", "halted", "aborted", "completed", "rolled_back"]
ScopeStr = Annotated[str, Field(pattern=r"^(fleet|site:[A-Za-z0-9][A-Za-z0-9_.:-]{0,63})$",
                                description='"fleet" or "site:<site>"')]
GroupStr = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]


class ReleaseOut(BaseModel):
    metadata_version: int
    model_version: int
    rollback: bool
    held: bool = Field(description="a pre-signed rollback, served only once a rollback needs it")
    created_ts: int
    expires_ts: int
    keyids: list[str]


class ModelVersionOut(BaseModel):
    task: str
    model_version: int
    scope: str
    status: ModelStatus
    sha256: str
    size_bytes: int
    metrics: dict[str, float]
    data_from_ts: int | None
    data_to_ts: int | None
    parent_version: int | None
    created_ts: int
    created_by: str
    job_id: int | None
    gate_passed: bool | None
    gate_reason: str | None
    promoted_by: str | None
    promoted_ts: int | None


class ModelVersionDetail(ModelVersionOut):
    manifest: dict[str, Any]
    releases: list[ReleaseOut]
    pending_signatures: list[int] = Field(description="metadata versions awaiting an offline signature")
    baseline_of: list[str] = Field(description="scopes that run this version outside rollouts")


class CandidateUpload(_Request):
    """``POST /api/v1/models/{task}/versions``: a model built elsewhere."""

    tflite_b64: Annotated[str, Field(min_length=4, description="base64 of the .tflite bytes")]
    manifest: dict[str, Any]
    metrics: dict[str, float] = Field(default_factory=dict)
    scope: ScopeStr = "fleet"
    data_from_ts: TsField | None = None
    data_to_ts: TsField | None = None
    parent_version: Annotated[int, Field(ge=1, le=MAX_API_INT)] | None = None


class PromoteRequest(_Request):
    force: bool = Field(False, description="promote although the quality gate failed")


class SigningRequestOut(BaseModel):
    request_id: int
    task: str
    metadata_version: int
    model_version: int
    purpose: Literal["release", "rollback", "resign"]
    state: Literal["pending", "signed"]
    created_ts: int
    release: ModelRelease = Field(description="sign exactly this (canonical JSON of it)")


class KeysOut(BaseModel):
    online_keyid: str | None = Field(description="the key the cloud signs with; null: offline signing")
    trusted: list[str] = Field(description="key ids the cloud accepts (settings, its own key, rotations)")
    rotation_version: int = Field(description="highest accepted rotation_version (0: none)")


class GatewayGroupIn(_Request):
    group: GroupStr | None = Field(description="null removes the gateway from its group")


class GatewayGroupOut(BaseModel):
    gateway_id: str
    group: str | None


class Gates(_Request):
    min_readings: Annotated[int, Field(ge=0, le=MAX_API_INT)] = 500
    max_alert_rate_ratio: Annotated[float, Field(gt=0)] = 2.0
    #: A ratio over the bound fails only with at least this many alerts (or readings in alert)
    #: beyond what the bound allows: 2 raises against 0 is noise, not a worse model.
    min_excess_alerts: Annotated[int, Field(ge=0, le=MAX_API_INT)] = 5
    max_wape_ratio: Annotated[float, Field(gt=0)] = 1.1
    min_actual_units: Annotated[float, Field(ge=0)] = 50.0
    #: device_anomaly: the gate waits for this many device-days (devices x days of their messages)
    #: on each side, then bounds device alerts per device-day (ratio to the baseline, and
    #: optionally an absolute budget) and the share of messages the model failed on.
    min_device_days: Annotated[float, Field(ge=0)] = 1.0
    max_device_alerts_per_day: Annotated[float, Field(gt=0)] | None = None
    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.01
    min_stage_duration_s: Annotated[float, Field(ge=0)] = 60.0
    stage_timeout_s: Annotated[float, Field(gt=0)] = 3600.0


class RolloutCreate(_Request):
    task: Literal["anomaly", "demand", "device_anomaly"]
    model_version: Annotated[int, Field(ge=1, le=MAX_API_INT)]
    scope: ScopeStr | None = Field(None, description="default: the model version's scope")
    group: GroupStr | None = Field(None, description="only gateways of this group (default: every gateway)")
    canary_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.1
    waves: list[float] = Field(default_factory=lambda: [0.5, 1.0],
                               description="cumulative fractions after the canary; the last is 1.0")
    shadow: bool = True
    gates: Gates = Field(default_factory=Gates)

    @field_validator("waves")
    @classmethod
    def _cumulative(cls, waves: list[float]) -> list[float]:
        if not waves or len(waves) > 20:
            raise ValueError("give 1 to 20 cumulative fractions")
        if any(not 0 < w <= 1 for w in waves) or any(b <= a for a, b in itertools.pairwise(waves)):
            raise ValueError("fractions must grow strictly within (0, 1]")
        if waves[-1] != 1.0:
            raise ValueError("the last wave must be 1.0 (every gateway)")
        return waves


class RolloutAction(_Request):
    reason: Annotated[str, Field(max_length=500)] | None = None


class RolloutMemberOut(BaseModel):
    gateway_id: GatewayIdStr
    stage: int
    previous_version: int | None
    gate: str
    detail: str | None
    current_version: int | None
    mode: Literal["shadow", "active"] | None = Field(description="what the desired state asks of it now")


class RolloutEventOut(BaseModel):
    ts: int
    kind: str
    stage: int | None
    reason: str


class RolloutStageOut(BaseModel):
    index: int
    name: str
    gateways: list[str]
    state: Literal["pending", "shadow", "active", "done"]


class RolloutOut(BaseModel):
    rollout_id: int
    task: str
    model_version: int
    previous_version: int | None
    scope: str
    group: str | None
    state: RolloutState
    stage: int
    n_stages: int
    phase: Literal["shadow", "active"]
    stage_started_ts: int
    shadow: bool
    canary_fraction: float
    waves: list[float]
    gates: Gates
    reason: str | None
    created_by: str
    created_ts: int
    updated_ts: int


class RolloutStatus(RolloutOut):
    stages: list[RolloutStageOut]
    members: list[RolloutMemberOut]
    events: list[RolloutEventOut]
