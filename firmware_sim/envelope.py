"""Per-device message building: boot ids, seq numbers, msg ids, and malformed variants."""

from __future__ import annotations

import json
import random

from firmware_sim.faults import MalformedKind
from protocols import (
    METRIC_RANGES,
    METRICS_V1,
    ScanBody,
    ScanMessage,
    StatusBody,
    StatusMessage,
    TelemetryBody,
    TelemetryMessage,
    encode,
)
from protocols.messages import COUNT_DIRECTION, Reading


class Envelopes:
    """Builds one device's envelopes. ``seq`` starts at 0 with every boot and never repeats in it."""

    def __init__(self, device_id: str, fw_version: str, rng: random.Random) -> None:
        self.device_id = device_id
        self.fw_version = fw_version
        self._rng = rng
        self.boot_id = ""
        self.boot_ms = 0
        self.seq = 0

    def new_boot(self, t_ms: int) -> str:
        self.boot_id = f"b{self._rng.getrandbits(64):016x}"
        self.boot_ms = t_ms
        self.seq = 0
        return self.boot_id

    def _next(self) -> tuple[str, int]:
        seq = self.seq
        self.seq += 1
        return f"{self._rng.getrandbits(96):024x}", seq

    def telemetry(self, readings: tuple[Reading, ...], ts: int) -> tuple[bytes, int]:
        msg_id, seq = self._next()
        # The oldest contract version that carries these metrics (v2 only for a pump's channels).
        v = 1 if all(r.metric in METRICS_V1 for r in readings) else 2
        msg = TelemetryMessage(
            v=v, msg_id=msg_id, device_id=self.device_id, boot_id=self.boot_id, seq=seq, ts=ts,
            body=TelemetryBody(readings=readings),
        )
        return encode(msg), seq

    def scan(self, body: ScanBody, ts: int) -> tuple[bytes, int]:
        msg_id, seq = self._next()
        # Movements stay scan schema v1 (gateways of every release take them); counts need v2.
        v = 2 if body.direction == COUNT_DIRECTION else 1
        msg = ScanMessage(msg_id=msg_id, v=v, device_id=self.device_id, boot_id=self.boot_id, seq=seq, ts=ts,
                          body=body)
        return encode(msg), seq

    def status(self, state: str, ts: int, t_ms: int, reason: str | None = None) -> tuple[bytes, int]:
        msg_id, seq = self._next()
        body = StatusBody(
            state=state,  # type: ignore[arg-type]
            fw_version=self.fw_version,
            uptime_s=max(0.0, (t_ms - self.boot_ms) / 1000.0),
            reason=reason,
        )
        msg = StatusMessage(msg_id=msg_id, device_id=self.device_id, boot_id=self.boot_id, seq=seq, ts=ts, body=body)
        return encode(msg), seq

    def malformed(self, valid: bytes, kind: MalformedKind) -> tuple[bytes, int]:
        """A broken variant of ``valid`` with its own msg id and seq (so it can never shadow a valid key)."""
        msg_id, seq = self._next()
        doc = json.loads(valid)
        doc["msg_id"] = msg_id
        doc["seq"] = seq
        if kind == "wrong_type":
            doc["seq"] = str(seq)
        elif kind == "out_of_range":
            body = doc["body"]
            if "readings" in body:
                metric = body["readings"][0]["metric"]
                body["readings"][0]["value"] = METRIC_RANGES[metric][1] * 2 + 1000.0
            else:
                body["qty"] = -1  # below every direction's range (0 is a valid count: an empty slot)
        elif kind == "unknown_field":
            doc["debug"] = {"probe": self._rng.randint(0, 999)}
        raw = json.dumps(doc, separators=(",", ":")).encode()
        if kind == "invalid_json":
            return raw.replace(b'"', b"'", 6), seq
        if kind == "truncated":
            return raw[: max(1, len(raw) // 2)], seq
        return raw, seq
