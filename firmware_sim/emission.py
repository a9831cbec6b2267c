"""What the simulator hands to a transport: one publish, connect, disconnect or ground-truth note."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Action = Literal["publish", "connect", "disconnect", "note"]
MessageKind = Literal["telemetry", "scan", "status"]
TruthEvent = dict[str, object]


@dataclass(frozen=True, slots=True)
class Emission:
    """One step of a device's output, in send order.

    * ``publish``: publish ``payload`` on ``topic`` (QoS 1; ``retain`` for status).
    * ``connect``: (re)connect the device with ``will_payload`` as its last will on ``topic``,
      then publish ``payload`` (the retained birth message).
    * ``disconnect``: drop the device's connection without a clean goodbye (the broker
      publishes the will).
    * ``note``: nothing goes on the wire; ``events`` are ground truth (e.g. an anomaly began).

    ``send_ms`` is true simulated time; payload timestamps are the (possibly skewed) device clock.
    """

    action: Action
    device_id: str
    site: str
    send_ms: int
    topic: str = ""
    payload: bytes = b""
    kind: MessageKind | None = None
    retain: bool = False
    will_payload: bytes = b""
    seq: int = -1
    boot_id: str = ""
    duplicate: bool = False
    malformed: bool = False
    burst_repeat: bool = False
    events: tuple[TruthEvent, ...] = ()

    @property
    def publishes(self) -> bool:
        return self.action in ("publish", "connect")
