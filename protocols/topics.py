"""MQTT topic builders and parsers: the only place topic strings are assembled.

Device topics:  ``edgehouse/v1/{site}/{device_id}/{kind}``, kind in telemetry|scan|status.
Gateway topics: ``edgehouse/v1/{site}/gw/{gateway_id}/{kind}``, kind in alert|forecast|status|cmd.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

ROOT = "edgehouse/v1"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
GATEWAY_SEGMENT = "gw"


class DeviceTopicKind(StrEnum):
    TELEMETRY = "telemetry"
    SCAN = "scan"
    STATUS = "status"


class GatewayTopicKind(StrEnum):
    ALERT = "alert"
    FORECAST = "forecast"
    #: Stock positions and cycle-count discrepancies (``protocols.stock``), as the gateway's book changes.
    STOCK = "stock"
    STATUS = "status"
    CMD = "cmd"


class TopicError(ValueError):
    """A topic that is not one of ours, or an identifier that cannot appear in one."""


def check_id(value: str, what: str) -> str:
    """Validate an identifier used as a topic level (no wildcards, separators or spaces)."""
    if not isinstance(value, str) or not _ID.match(value):
        raise TopicError(f"{what} {value!r} must match {_ID.pattern}")
    if value == GATEWAY_SEGMENT and what == "device_id":
        raise TopicError(f"device_id may not be the reserved word {GATEWAY_SEGMENT!r}")
    return value


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    site: str
    device_id: str
    kind: DeviceTopicKind

    def __str__(self) -> str:
        return device_topic(self.site, self.device_id, self.kind)


@dataclass(frozen=True, slots=True)
class GatewayTopic:
    site: str
    gateway_id: str
    kind: GatewayTopicKind

    def __str__(self) -> str:
        return gateway_topic(self.site, self.gateway_id, self.kind)


def device_topic(site: str, device_id: str, kind: DeviceTopicKind | str) -> str:
    kind = DeviceTopicKind(kind)
    return f"{ROOT}/{check_id(site, 'site')}/{check_id(device_id, 'device_id')}/{kind.value}"


def gateway_topic(site: str, gateway_id: str, kind: GatewayTopicKind | str) -> str:
    kind = GatewayTopicKind(kind)
    return f"{ROOT}/{check_id(site, 'site')}/{GATEWAY_SEGMENT}/{check_id(gateway_id, 'gateway_id')}/{kind.value}"


def device_filter(site: str, device_id: str | None = None) -> str:
    """Subscription filter for one device's topics, or every device of a site."""
    dev = "+" if device_id is None else check_id(device_id, "device_id")
    return f"{ROOT}/{check_id(site, 'site')}/{dev}/+"


def parse_topic(topic: str) -> DeviceTopic | GatewayTopic:
    """Parse one of our topics; raise :class:`TopicError` naming what is wrong."""
    parts = topic.split("/")
    if len(parts) < 5 or "/".join(parts[:2]) != ROOT:
        raise TopicError(f"topic {topic!r} is not under {ROOT}/")
    site = check_id(parts[2], "site")
    if parts[3] == GATEWAY_SEGMENT:
        if len(parts) != 6:
            raise TopicError(f"gateway topic {topic!r} must have 6 levels")
        try:
            kind = GatewayTopicKind(parts[5])
        except ValueError:
            raise TopicError(f"unknown gateway topic kind {parts[5]!r}") from None
        return GatewayTopic(site, check_id(parts[4], "gateway_id"), kind)
    if len(parts) != 5:
        raise TopicError(f"device topic {topic!r} must have 5 levels")
    try:
        dkind = DeviceTopicKind(parts[4])
    except ValueError:
        raise TopicError(f"unknown device topic kind {parts[4]!r}") from None
    return DeviceTopic(site, check_id(parts[3], "device_id"), dkind)
