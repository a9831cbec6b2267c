"""A message as it leaves the MQTT network thread: topic, raw bytes and what acking it needs."""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias


@dataclass(frozen=True, slots=True)
class Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    #: Which broker connection delivered it: packet ids are only meaningful on that connection.
    connection: int = 0


InboundQueue: TypeAlias = "queue.Queue[Inbound]"
#: Acknowledge one delivered message to the broker (a no-op for QoS 0).
Acker: TypeAlias = Callable[[Inbound], None]
