"""The joint device score on a simulated fleet's multichannel devices (for bench/sim_detection.py).

Only the fleet's devices that report several channels in one message are simulated (each device
has its own seeded generators, so they behave exactly as in the whole fleet); every decoded,
de-duplicated telemetry message goes through the gateway's ``DeviceScoringWorker`` path:
``DeviceScorer`` (the shipped int8 model and threshold) and ``DeviceAlerts`` (``ModelsConfig``
clear ratio and cool-down). Labels naming one metric count as detected by a device alert too.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from edge_agent.config import ModelsConfig
from edge_agent.scoring.device_alerts import DeviceAlertConfig, DeviceAlerts
from firmware_sim import Fleet, messages
from models.device_anomaly import DeviceScorer
from models.runtime import default_model_path, load_model
from protocols import DecodeError, DeviceTopicKind, TelemetryMessage, decode_device_message

#: Device kinds whose telemetry carries two or more channels (firmware_sim/devices).
MULTICHANNEL_KINDS = ("pump", "cold_room", "conveyor", "power_meter", "humidity")


@dataclass(frozen=True, slots=True)
class DeviceStream:
    #: (device_id, kind, start_ts, end_ts) of every labelled anomaly of those devices (true time).
    windows: tuple[tuple[str, str, int, int], ...]
    #: (device_id, ts) of every raised device alert (true time).
    alerts: tuple[tuple[str, int], ...]
    devices: int
    #: Devices scored jointly, per kind.
    kinds: dict[str, int]
    messages: int
    threshold: float


def stream_devices(fleet: Fleet, days: float, model_path: Path | None = None) -> DeviceStream:
    specs = [d for d in fleet.devices if d.kind in MULTICHANNEL_KINDS]
    model = load_model(model_path or default_model_path("device_anomaly"))
    scorer = DeviceScorer(model)
    settings = ModelsConfig()
    alerts = DeviceAlerts(
        "sim-detection",
        DeviceAlertConfig(
            threshold=scorer.config.threshold,
            clear_ratio=settings.clear_ratio,
            cooldown_ms=int(settings.cooldown_s * 1000),
            max_devices=scorer.config.max_devices,
            confirm=settings.device_confirm_messages,
        ),
        model.manifest.version,
    )
    if not specs:
        return DeviceStream((), (), 0, {}, 0, scorer.config.threshold)
    windows: list[tuple[str, str, int, int]] = []
    raised: list[tuple[str, int]] = []
    seen: set[tuple[str, str, int]] = set()
    skew_ms: dict[str, int] = defaultdict(int)
    n = 0
    suffix = "/" + DeviceTopicKind.TELEMETRY.value
    for topic, payload, events in messages(fleet, sim_seconds=int(days * 86_400), devices=specs):
        for ev in events:
            if ev.get("type") == "anomaly":
                windows.append(
                    (str(ev["device_id"]), str(ev["kind"]), int(str(ev["start_ts"])), int(str(ev["end_ts"])))
                )
            elif ev.get("type") == "fault" and ev.get("fault") == "clock_skew":
                skew_ms[str(ev["device_id"])] = int(str(ev["offset_ms"]))
        if not topic.endswith(suffix):
            continue
        try:
            msg = decode_device_message(payload, "telemetry")
        except DecodeError:
            continue
        assert isinstance(msg, TelemetryMessage)
        if msg.dedup_key in seen:
            continue
        seen.add(msg.dedup_key)
        n += 1
        result = scorer.score(msg.device_id, {r.metric: float(r.value) for r in msg.body.readings})
        if result is None:
            continue
        alert = alerts.observe(msg.device_id, msg.ts, result)
        if alert is not None and alert.state == "raised":
            raised.append((msg.device_id, msg.ts - skew_ms[msg.device_id]))
    # Devices the joint score left to the per-stream scorer (too few usable channels) are left out.
    scored = [d for d in specs if scorer.is_warm(d.device_id)]
    ids = {d.device_id for d in scored}
    kinds: dict[str, int] = defaultdict(int)
    for d in scored:
        kinds[str(d.kind)] += 1
    return DeviceStream(
        tuple(w for w in windows if w[0] in ids), tuple(raised), len(scored), dict(kinds), n, scorer.config.threshold
    )
