"""Helpers of the cloud tests and benchmark: settings, gateway registration, valid records and batches."""

from __future__ import annotations

import gzip
import json
from typing import Any

from fastapi.testclient import TestClient
from pydantic import SecretStr

from cloud.settings import CloudSettings
from protocols import record_id

BASE_TS = 1_790_000_000_000
ADMIN_TOKEN = "test-admin-" + "Q7v2Lk9pX4wZ8rT1"
GATEWAY_ID = "gw-berlin-1"


def make_settings(database_url: str, **over: Any) -> CloudSettings:
    return CloudSettings(admin_token=SecretStr(ADMIN_TOKEN), database_url=database_url, **over)


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def register(client: TestClient, gateway_id: str = GATEWAY_ID, site: str = "berlin") -> dict[str, str]:
    """Register a gateway; returns its auth headers."""
    resp = client.post("/api/v1/gateways", json={"gateway_id": gateway_id, "site": site}, headers=admin_headers())
    assert resp.status_code == 201, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


def telemetry_record(device: str = "cold-1", seq: int = 0, boot: str = "b1", temp: float = 4.0) -> dict[str, Any]:
    return {
        "kind": "telemetry",
        "id": record_id("telemetry", device, boot, seq),
        "received_ts": BASE_TS + seq * 1000 + 5,
        "msg": {
            "schema": "edgehouse.telemetry", "v": 1, "msg_id": f"m-{device}-{boot}-{seq}", "device_id": device,
            "boot_id": boot, "seq": seq, "ts": BASE_TS + seq * 1000,
            "body": {"readings": [{"metric": "temperature_c", "value": temp},
                                  {"metric": "door_open", "value": float(seq % 2)}]},
        },
    }


def scan_record(device: str = "reader-1", seq: int = 0, sku: str = "SKU-1", boot: str = "b1") -> dict[str, Any]:
    return {
        "kind": "scan",
        "id": record_id("scan", device, boot, seq),
        "received_ts": BASE_TS + seq,
        "msg": {
            "schema": "edgehouse.scan", "v": 1, "msg_id": f"s-{device}-{seq}", "device_id": device, "boot_id": boot,
            "seq": seq, "ts": BASE_TS + seq,
            "body": {"code_type": "barcode", "sku": sku, "location": "A-01", "direction": "pick", "qty": 2,
                     "reader_id": device},
        },
    }


def status_record(device: str = "cold-1", seq: int = 0, boot: str = "b1") -> dict[str, Any]:
    return {
        "kind": "device_status",
        "id": record_id("device_status", device, boot, seq),
        "received_ts": BASE_TS + seq,
        "msg": {
            "schema": "edgehouse.status", "v": 1, "msg_id": f"st-{device}-{seq}", "device_id": device,
            "boot_id": boot, "seq": seq, "ts": BASE_TS + seq,
            "body": {"state": "online", "fw_version": "1.2.3", "uptime_s": 12.5},
        },
    }


def alert_record(gateway_id: str, n: int = 0, device: str = "cold-1", ts: int | None = None) -> dict[str, Any]:
    return {
        "kind": "alert",
        "id": f"alert:a{n}",  # protocols.alert_record_id: the id follows the content
        "alert": {
            "schema": "edgehouse.alert", "v": 1, "alert_id": f"a{n}", "gateway_id": gateway_id, "kind": "anomaly",
            "state": "raised", "severity": "critical", "ts": BASE_TS + n if ts is None else ts,
            "message": "temperature drift", "device_id": device, "metric": "temperature_c", "score": 0.97,
            "threshold": 0.8, "expected": 4.0, "observed": 9.5,
        },
    }


def forecast_record(gateway_id: str, n: int = 0, sku: str = "SKU-1", site: str = "berlin") -> dict[str, Any]:
    return {
        "kind": "forecast",
        "id": f"forecast:f{n}",  # protocols.forecast_record_id
        "forecast": {
            "schema": "edgehouse.forecast", "v": 1, "forecast_id": f"f{n}", "gateway_id": gateway_id, "site": site,
            "sku": sku, "origin": "2026-11-24", "created_ts": BASE_TS + n, "p50": [3.0, 4.0, 5.0],
            "p90": [5.0, 6.5, 8.0], "model_version": 3,
        },
    }


def batch(gateway_id: str, records: list[dict[str, Any]], batch_id: str = "batch-1") -> dict[str, Any]:
    return {"schema": "edgehouse.sync_batch", "v": 1, "gateway_id": gateway_id, "batch_id": batch_id,
            "sent_ts": BASE_TS, "agent_version": "0.1.0", "records": records}


def gz(doc: dict[str, Any]) -> bytes:
    return gzip.compress(json.dumps(doc).encode(), compresslevel=5)


def telemetry_batch(gateway_id: str, start: int, stop: int, batch_id: str = "batch-1",
                    device: str = "cold-1") -> dict[str, Any]:
    return batch(gateway_id, [telemetry_record(device, seq) for seq in range(start, stop)], batch_id)


#: Device kinds of :func:`mixed_records`: the metrics each telemetry message carries (as firmware_sim's devices).
DEVICE_METRICS: dict[str, tuple[str, ...]] = {
    "cold": ("temperature_c", "door_open", "power_w"),
    "conv": ("vibration_rms_mm_s", "power_w", "temperature_c"),
    "amb": ("humidity_pct", "temperature_c"),
}


def mixed_records(gateway_id: str, start: int, n: int, devices: int = 20, ts0: int = BASE_TS,
                  step_ms: int = 1000) -> list[dict[str, Any]]:
    """``n`` records of a gateway's ordinary traffic, numbered from ``start`` (same numbers, same records).

    Per 200 records: 170 telemetry messages of 2-3 readings with sensor-like values (cold rooms,
    conveyors, ambient sensors cycling over ``devices`` devices), 24 scans (picks, some inbound,
    barcode and RFID), 2 device status messages, 3 alerts and 1 forecast. Record ``k`` is at
    ``ts0 + k * step_ms`` (a message every ``step_ms`` across the gateway's devices).
    """
    out: list[dict[str, Any]] = []
    kinds = tuple(DEVICE_METRICS)
    for k in range(start, start + n):
        ts, slot = ts0 + k * step_ms, k % 200
        if slot < 170:
            device = f"{kinds[k % 3]}-{k % devices}"
            seq = k
            readings = [{"metric": m, "value": _value(m, k)} for m in DEVICE_METRICS[kinds[k % 3]]]
            out.append({"kind": "telemetry", "id": record_id("telemetry", device, "b1", seq), "received_ts": ts + 7,
                        "msg": {"schema": "edgehouse.telemetry", "v": 1, "msg_id": f"m{k:012d}", "device_id": device,
                                "boot_id": "b1", "seq": seq, "ts": ts, "body": {"readings": readings}}})
        elif slot < 194:
            reader = f"reader-{k % 4}"
            rfid = k % 3 == 0
            body: dict[str, Any] = {"code_type": "rfid" if rfid else "barcode", "sku": f"SKU-{k % 37:03d}",
                                    "location": f"A-{k % 12:02d}", "direction": "inbound" if k % 5 == 0 else "pick",
                                    "qty": 1 + k % 4, "reader_id": reader}
            if rfid:
                body["tag_id"] = f"E200{k:016X}"
            out.append({"kind": "scan", "id": record_id("scan", reader, "b1", k), "received_ts": ts + 3,
                        "msg": {"schema": "edgehouse.scan", "v": 1, "msg_id": f"s{k:012d}", "device_id": reader,
                                "boot_id": "b1", "seq": k, "ts": ts, "body": body}})
        elif slot < 196:
            out.append(status_record(f"cold-{k % devices}", k))
            out[-1]["msg"]["ts"] = ts
        elif slot < 199:
            out.append(alert_record(gateway_id, k, device=f"cold-{k % devices}", ts=ts))
        else:
            out.append(forecast_record(gateway_id, k, sku=f"SKU-{k % 37:03d}"))
    return out


def _value(metric: str, k: int) -> float:
    wave = ((k * 7919) % 1000) / 1000.0
    return {"temperature_c": round(3.5 + wave, 2), "door_open": float(k % 17 == 0), "power_w": round(850 + 90 * wave, 2),
            "vibration_rms_mm_s": round(2.0 + 1.5 * wave, 2), "humidity_pct": round(45 + 10 * wave, 2)}[metric]
