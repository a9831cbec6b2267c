"""The updater's side of the model-update contract: fetch the desired state, post the report.

``GET {cloud.url}/api/v1/gateways/{id}/models/desired`` with ``If-None-Match`` (304: the document
already parsed is applied again), ``POST …/models/report``. The desired document is parsed once,
when it arrives, into :class:`Desired`: the envelope must validate (else nothing of it is
applied), each model item and key rotation on its own, so one malformed item is refused
(:class:`Malformed`) without losing the others.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from edge_agent.metrics import AgentMetrics
from protocols import (
    DESIRED_PATH,
    REPORT_PATH,
    DesiredModel,
    DesiredModels,
    ModelReport,
    RejectCode,
    SignedKeyRotation,
)

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Malformed:
    """An item of the desired document that does not validate: refused once (by ``digest``)."""

    #: The task the item names, when it names one.
    task: str | None
    #: sha256 of the raw item: the same malformed item is refused (and counted) once.
    digest: str
    code: RejectCode
    reason: str


@dataclass(frozen=True, slots=True)
class Desired:
    """One desired-models document, parsed."""

    gateway_id: str
    models: tuple[DesiredModel | Malformed, ...]
    key_rotations: tuple[SignedKeyRotation | Malformed, ...]

    def wanted_artifacts(self) -> set[str]:
        """sha256 of every artifact the document names (their partial downloads stay)."""
        return {m.release.signed.artifact.sha256 for m in self.models if isinstance(m, DesiredModel)}


@dataclass(frozen=True, slots=True)
class Fetched:
    """``ok``: the fetch worked (200, 304 or 404); ``desired``: the document to apply, if any."""

    ok: bool
    desired: Desired | None = None


def parse_desired(raw: dict[str, Any]) -> Desired:
    """Parse a decoded desired document; ValidationError when its envelope is invalid."""
    envelope = _parse(DesiredModels, {**raw, "models": [], "key_rotations": []})
    models: list[DesiredModel | Malformed] = []
    for item in raw.get("models") or []:
        try:
            models.append(_parse(DesiredModel, item))
        except ValidationError as exc:
            task = item.get("task") if isinstance(item, dict) else None
            first = exc.errors(include_url=False)[0]
            loc = tuple(str(p) for p in first.get("loc", ()))
            code: RejectCode = (
                "bad_signature" if loc[:2] == ("release", "signatures") else "manifest_mismatch"
            )
            reason = f"release invalid at {'.'.join(loc)}: {first.get('msg')}"
            models.append(Malformed(task if isinstance(task, str) else None, _raw_digest(item), code, reason))
    rotations: list[SignedKeyRotation | Malformed] = []
    for item in raw.get("key_rotations") or []:
        try:
            rotations.append(_parse(SignedKeyRotation, item))
        except ValidationError as exc:
            reason = str(exc.errors(include_url=False)[:1])
            rotations.append(Malformed(None, _raw_digest(item), "bad_signature", reason))
    return Desired(envelope.gateway_id, tuple(models), tuple(rotations))


class UpdateClient:
    """Fetches the desired state (keeping its ETag and the parsed document) and posts reports."""

    def __init__(self, gateway_id: str, metrics: AgentMetrics) -> None:
        self._gateway_id = gateway_id
        self._metrics = metrics
        self._etag: str | None = None
        self._desired: Desired | None = None

    def fetch(self, client: httpx.Client) -> Fetched:
        path = DESIRED_PATH.format(gateway_id=self._gateway_id)
        headers = {"If-None-Match": self._etag} if self._etag and self._desired is not None else {}
        try:
            resp = client.get(path, headers=headers)
        except httpx.HTTPError as exc:
            return self._failed(f"desired models: {exc}")
        if resp.status_code == 304 and self._desired is not None:
            return Fetched(True, self._desired)
        if resp.status_code == 404:
            log.info("desired models: none for this gateway (404)")
            return Fetched(True)
        if resp.status_code != 200:
            return self._failed(f"desired models: HTTP {resp.status_code}")
        try:
            raw = resp.json()
        except ValueError:
            raw = None
        if not isinstance(raw, dict):
            return self._failed("desired models: not a JSON object")
        self._etag = resp.headers.get("ETag")
        try:
            self._desired = parse_desired(raw)
        except ValidationError as exc:
            self._desired = None
            self._metrics.model_update_failures.labels("desired").inc()
            log.warning("desired models document invalid: %s", exc.errors(include_url=False)[:1])
            return Fetched(True)
        return Fetched(True, self._desired)

    def _failed(self, message: str) -> Fetched:
        self._metrics.model_update_failures.labels("desired").inc()
        log.warning("%s", message)
        return Fetched(False)

    def post_report(self, client: httpx.Client, report: ModelReport) -> bool:
        try:
            resp = client.post(
                REPORT_PATH.format(gateway_id=self._gateway_id),
                content=report.model_dump_json(by_alias=True),
                headers={"Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:
            self._metrics.model_update_failures.labels("report").inc()
            log.warning("model report not sent: %s", exc)
            return False
        if resp.status_code >= 300:
            self._metrics.model_update_failures.labels("report").inc()
            log.warning("model report refused: HTTP %d", resp.status_code)
            return False
        return True


def _parse(model: type[_M], item: Any) -> _M:
    """Validate a decoded JSON value as the wire model (strict models take JSON, not Python objects)."""
    return model.model_validate_json(json.dumps(item))


def _raw_digest(item: Any) -> str:
    return hashlib.sha256(json.dumps(item, sort_keys=True, default=str).encode()).hexdigest()
