"""Model updates: signed releases, key rotations, a gateway's desired models and its report.

Following TUF's ideas at the scale we need:

* A :class:`ModelRelease` is the *signed part* of a release document: which model (task, model
  version, the full model manifest with tensor specs and scales), which artifact (sha256 and
  length of the ``.tflite``), until when it is valid (``expires_ts``) and a
  ``metadata_version`` that only grows per task, so an old document replayed later is refused.
  A rollback to an older model is a *new* document (higher ``metadata_version``) with
  ``rollback=True``; without that flag a lower ``model_version`` is a downgrade and refused.
* :class:`SignedRelease` wraps it with Ed25519 signatures over its canonical JSON
  (:func:`protocols.signing.canonical_bytes`). Gateways trust the keys in their config plus
  keys introduced by a :class:`KeyRotation` signed by a key they already trust.
* :class:`DesiredModels` is what a gateway fetches (with ``ETag``/``If-None-Match``) from
  ``GET /api/v1/gateways/{gateway_id}/models/desired``; artifacts come from
  ``GET /api/v1/models/artifacts/{sha256}`` (``Range`` requests supported, so downloads
  resume). The gateway reports its state with ``POST /api/v1/gateways/{gateway_id}/models/report``
  (:class:`ModelReport`).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import Field, model_validator

from protocols.messages import Frozen, Ident, TsMs

ModelTask = Literal["anomaly", "demand", "device_anomaly"]
MODEL_TASKS: Final[tuple[str, ...]] = ("anomaly", "demand", "device_anomaly")
#: Tasks added after the first release of the update protocol, with the first version of each
#: contract that may carry them: an agent of an earlier release refuses them (its ``task`` and
#: ``v`` are literals), so the cloud sends them only to agents whose model_report is at least
#: ``REPORT_V_FOR_NEW_TASKS`` (:func:`supports_task`); everything else stays at the old version.
RELEASE_V: Final[dict[str, int]] = {"anomaly": 1, "demand": 1, "device_anomaly": 2}
DESIRED_V_FOR_NEW_TASKS: Final = 2
REPORT_V_FOR_NEW_TASKS: Final = 3


def release_version(task: str) -> int:
    """The ``v`` a release of ``task`` is signed as (the oldest that carries the task)."""
    return RELEASE_V[task]


def supports_task(report_v: int | None, task: str) -> bool:
    """Whether an agent whose latest model_report had version ``report_v`` understands ``task``."""
    if RELEASE_V.get(task, 1) == 1:
        return True
    return report_v is not None and report_v >= REPORT_V_FOR_NEW_TASKS
KeyId = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="sha256 (hex) of the raw public key")]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Version = Annotated[int, Field(ge=1, le=2**53 - 1)]
SemVer = Annotated[str, Field(pattern=r"^\d{1,6}\.\d{1,6}\.\d{1,6}$")]
#: base64 (standard alphabet, padded) of a raw 32-byte Ed25519 public key.
PublicKeyB64 = Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]{43}=$")]
#: base64 of a 64-byte Ed25519 signature.
SignatureB64 = Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]{86}==$")]

#: Paths of the model-update API (relative to the cloud base URL).
DESIRED_PATH: Final = "/api/v1/gateways/{gateway_id}/models/desired"
REPORT_PATH: Final = "/api/v1/gateways/{gateway_id}/models/report"
ARTIFACT_PATH: Final = "/api/v1/models/artifacts/{sha256}"

#: Why a gateway refused (or could not install) a release. Every refusal leaves the current model running.
RejectCode = Literal[
    "unsigned",  # no signatures at all
    "unknown_key",  # signed, but by no key this gateway trusts
    "bad_signature",  # a trusted key id, but the signature does not verify (tampered document)
    "expired",  # expires_ts is in the past
    "replay",  # metadata_version not above the last accepted one for this task
    "downgrade",  # lower model_version without a signed rollback
    "sha256_mismatch",  # downloaded bytes differ from the signed digest (tampered artifact)
    "length_mismatch",  # downloaded more or fewer bytes than the signed length (truncated)
    "manifest_mismatch",  # the embedded manifest disagrees with the signed artifact / task
    "incompatible",  # tensor specs or features this agent cannot run
    "agent_too_old",  # min_agent_version above this agent's version
    "download_failed",  # HTTP errors after retries
    "disk_full",  # no space to stage the artifact
    "load_failed",  # the runtime refused the model
]


class Signature(Frozen):
    keyid: KeyId
    sig: SignatureB64


class ArtifactRef(Frozen):
    sha256: Sha256
    length: Annotated[int, Field(ge=1, le=1 << 31)]


class ModelRelease(Frozen):
    """The signed part of a release document."""

    schema_: Literal["edgehouse.model_release"] = Field("edgehouse.model_release", alias="schema")
    #: v2 adds the task ``device_anomaly`` (whose releases are v2); anomaly and demand releases
    #: stay v1, so agents of the previous release keep accepting them.
    v: Literal[1, 2] = 2
    task: ModelTask
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    metadata_version: Version
    model_version: Version
    created_ts: TsMs
    expires_ts: TsMs
    artifact: ArtifactRef
    min_agent_version: SemVer = "0.1.0"
    rollback: bool = False
    #: ``models.manifest.ModelManifest`` as JSON (tensor specs, scales, features, defaults).
    manifest: dict[str, Any]

    @model_validator(mode="after")
    def _consistent(self) -> ModelRelease:
        if self.v < RELEASE_V[self.task]:
            raise ValueError(f"task {self.task} needs model_release v{RELEASE_V[self.task]}")
        if self.expires_ts <= self.created_ts:
            raise ValueError("expires_ts must be after created_ts")
        m = self.manifest
        if m.get("task") != self.task:
            raise ValueError("manifest.task differs from task")
        if m.get("sha256") != self.artifact.sha256 or m.get("size_bytes") != self.artifact.length:
            raise ValueError("manifest sha256/size_bytes differ from the artifact")
        if m.get("version") != self.model_version:
            raise ValueError("manifest.version differs from model_version")
        return self


class SignedRelease(Frozen):
    signed: ModelRelease
    signatures: Annotated[tuple[Signature, ...], Field(max_length=8)]


class PublicKey(Frozen):
    keyid: KeyId
    public_key: PublicKeyB64


class KeyRotation(Frozen):
    """Signed by a key the gateway already trusts: adds keys and/or revokes keys."""

    schema_: Literal["edgehouse.key_rotation"] = Field("edgehouse.key_rotation", alias="schema")
    v: Literal[1] = 1
    rotation_version: Version
    created_ts: TsMs
    add: Annotated[tuple[PublicKey, ...], Field(max_length=8)] = ()
    revoke: Annotated[tuple[KeyId, ...], Field(max_length=8)] = ()

    @model_validator(mode="after")
    def _something(self) -> KeyRotation:
        if not self.add and not self.revoke:
            raise ValueError("a key rotation must add or revoke a key")
        return self


class SignedKeyRotation(Frozen):
    signed: KeyRotation
    signatures: Annotated[tuple[Signature, ...], Field(max_length=8)]


class DesiredModel(Frozen):
    """One task's desired model for one gateway."""

    task: ModelTask
    release: SignedRelease
    #: Where to download the artifact, relative to the cloud base URL (``ARTIFACT_PATH``).
    artifact_path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9/_.-]{1,300}$")]
    #: ``shadow``: run it next to the current model and report, do not act on it yet.
    mode: Literal["active", "shadow"] = "active"
    rollout_id: Annotated[int, Field(ge=1)] | None = None


class DesiredModels(Frozen):
    schema_: Literal["edgehouse.desired_models"] = Field("edgehouse.desired_models", alias="schema")
    #: v2 may carry ``device_anomaly`` models; the cloud sends v1 (without them) to agents that
    #: do not report supporting it (:func:`supports_task`).
    v: Literal[1, 2] = 2
    gateway_id: Ident
    generated_ts: TsMs
    models: Annotated[tuple[DesiredModel, ...], Field(max_length=4)] = ()
    key_rotations: Annotated[tuple[SignedKeyRotation, ...], Field(max_length=32)] = ()

    @model_validator(mode="after")
    def _tasks_of_version(self) -> DesiredModels:
        for m in self.models:
            if self.v < DESIRED_V_FOR_NEW_TASKS and RELEASE_V[m.task] > 1:
                raise ValueError(f"task {m.task} needs desired_models v{DESIRED_V_FOR_NEW_TASKS}")
        return self


class ModelStats(Frozen):
    """What one model version did on a gateway since ``since_ts`` (for quality gates)."""

    model_version: Version
    since_ts: TsMs
    readings: Annotated[int, Field(ge=0)] = 0
    alerts_raised: Annotated[int, Field(ge=0)] = 0
    #: Readings scored at or above the model's own alert threshold (time in alert, not raises:
    #: a stream stuck in alert raises once but keeps counting here).
    alert_readings: Annotated[int, Field(ge=0)] = 0
    forecasts: Annotated[int, Field(ge=0)] = 0
    #: Sum over forecast days that have actuals of |P50 - actual| and of actual (WAPE = ratio).
    forecast_abs_error: Annotated[float, Field(ge=0)] = 0.0
    forecast_actual_units: Annotated[float, Field(ge=0)] = 0.0
    #: (model_report v3) Distinct devices the model scored, and device-days observed (per device the
    #: message time between its consecutive scored messages, gaps over an hour left out, summed):
    #: device alerts per device-day gate the device model.
    devices: Annotated[int, Field(ge=0)] = 0
    device_days: Annotated[float, Field(ge=0)] = 0.0
    #: (model_report v3) Readings/messages the model failed on (runtime errors, unreadable input).
    errors: Annotated[int, Field(ge=0)] = 0


TaskState = Literal["none", "running", "downloading", "shadow", "rejected"]


class TaskReport(Frozen):
    task: ModelTask
    state: TaskState
    current_version: Version | None = None
    current_metadata_version: Version | None = None
    current_sha256: Sha256 | None = None
    previous_version: Version | None = None
    pending_version: Version | None = None
    shadow_version: Version | None = None
    rejected_version: Version | None = None
    rejected_code: RejectCode | None = None
    rejected_reason: Annotated[str, Field(max_length=500)] | None = None
    rejected_ts: TsMs | None = None
    rollout_id: Annotated[int, Field(ge=1)] | None = None
    #: The running model since it became active.
    active_stats: ModelStats | None = None
    #: The shadow candidate since its shadow run began, and the running model over exactly the
    #: same readings/days (so the two compare like for like).
    shadow_stats: ModelStats | None = None
    shadow_baseline_stats: ModelStats | None = None
    #: The model the running one replaced, over its last active period.
    previous_stats: ModelStats | None = None


class GatewayHealth(Frozen):
    """How the agent itself is doing when it reports (``ModelReport`` v2): what the console's fleet shows."""

    #: Records in the outbox, not yet acknowledged by the cloud.
    outbox_depth: Annotated[int, Field(ge=0, le=2**53 - 1)]
    #: When the oldest of them was created (None: the outbox is empty).
    oldest_unsynced_ts: TsMs | None = None
    #: Whether the agent is connected to its local MQTT broker.
    mqtt_connected: bool


class ModelReport(Frozen):
    """A gateway's report. v2 adds ``gateway`` (its health); v3 the task ``device_anomaly`` and the
    stats ``devices``, ``device_days``, ``errors`` (an agent reporting v3 understands desired_models
    v2 and model_release v2). The cloud takes v1, v2 and v3 (deploy it first)."""

    schema_: Literal["edgehouse.model_report"] = Field("edgehouse.model_report", alias="schema")
    v: Literal[1, 2, 3] = 3
    gateway_id: Ident
    ts: TsMs
    agent_version: Annotated[str, Field(min_length=1, max_length=32)]
    trusted_keyids: Annotated[tuple[KeyId, ...], Field(max_length=32)] = ()
    tasks: Annotated[tuple[TaskReport, ...], Field(max_length=4)] = ()
    gateway: GatewayHealth | None = None

    @model_validator(mode="after")
    def _tasks_of_version(self) -> ModelReport:
        for t in self.tasks:
            if self.v < REPORT_V_FOR_NEW_TASKS and RELEASE_V[t.task] > 1:
                raise ValueError(f"task {t.task} needs model_report v{REPORT_V_FOR_NEW_TASKS}")
        return self
