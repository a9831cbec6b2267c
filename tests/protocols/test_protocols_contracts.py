"""Wire contracts: strict decoding, topics, and the schema-version contract test."""

from __future__ import annotations

import json
from typing import get_args

import pytest

from protocols import (
    DEVICE_RECORD_KINDS,
    RECORD_KIND_OF_TOPIC,
    RECORD_KINDS,
    DecodeError,
    DeviceTopicKind,
    Reading,
    ScanBody,
    ScanMessage,
    SyncAck,
    SyncBatch,
    SyncBatchHeader,
    TelemetryBody,
    TelemetryMessage,
    TelemetryRecord,
    TopicError,
    decode_device_message,
    device_topic,
    encode,
    gateway_topic,
    parse_topic,
    record_id,
)
from protocols.schemas import drift
from protocols.sync import BATCH_V2_KINDS, SyncRecord


def _telemetry(**over: object) -> dict:
    msg = {
        "schema": "edgehouse.telemetry",
        "v": 1,
        "msg_id": "m1",
        "device_id": "cold-1",
        "boot_id": "b1",
        "seq": 7,
        "ts": 1_700_000_000_000,
        "body": {"readings": [{"metric": "temperature_c", "value": 3.5}, {"metric": "door_open", "value": 0.0}]},
    }
    msg.update(over)
    return msg


def test_telemetry_v2_metrics_need_v2() -> None:
    pump = {"readings": [{"metric": "pressure_bar", "value": 2.5}, {"metric": "flow_m3_h", "value": 40.0}]}
    assert decode_device_message(json.dumps(_telemetry(v=2, body=pump)).encode()).v == 2
    with pytest.raises(DecodeError) as err:
        decode_device_message(json.dumps(_telemetry(v=1, body=pump)).encode())
    assert "flow_m3_h, pressure_bar need v 2" in err.value.reason
    assert decode_device_message(json.dumps(_telemetry()).encode()).v == 1  # v1 still valid


def test_round_trip_telemetry() -> None:
    raw = json.dumps(_telemetry()).encode()
    msg = decode_device_message(raw, "telemetry")
    assert isinstance(msg, TelemetryMessage)
    assert msg.dedup_key == ("cold-1", "b1", 7)
    assert decode_device_message(encode(msg)) == msg


@pytest.mark.parametrize(
    ("mutate", "field", "fragment"),
    [
        (lambda m: m.update(extra=1), "extra", "Extra inputs"),
        (lambda m: m.update(seq="7"), "seq", "valid integer"),
        (lambda m: m.update(seq=-1), "seq", "greater than or equal"),
        (lambda m: m["body"]["readings"][0].update(value=300.0), "body.readings.0", "outside"),
        (lambda m: m["body"]["readings"][0].update(metric="pressure"), "body.readings.0.metric", "Input should be"),
        (lambda m: m["body"].update(readings=[]), "body.readings", "at least 1"),
        (lambda m: m.update(device_id="a/b"), "device_id", "pattern"),
        (lambda m: m.update(v=3), "v", "Input should be 1 or 2"),
    ],
)
def test_strict_decoding_names_the_field(mutate, field: str, fragment: str) -> None:
    msg = _telemetry()
    mutate(msg)
    with pytest.raises(DecodeError) as err:
        decode_device_message(json.dumps(msg).encode())
    assert err.value.field == field
    assert fragment in err.value.reason


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe", b"[]", b"null", b"x" * 70_000])
def test_garbage_is_a_decode_error(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_device_message(raw)


def test_schema_must_match_topic_kind() -> None:
    with pytest.raises(DecodeError, match="published on a 'scan' topic"):
        decode_device_message(json.dumps(_telemetry()).encode(), "scan")


def test_rfid_needs_tag() -> None:
    with pytest.raises(ValueError, match="tag_id"):
        ScanBody(code_type="rfid", sku="SKU-1", location="dock-1", direction="inbound", qty=1, reader_id="r1")


def test_topics_round_trip_and_reject() -> None:
    t = device_topic("site-a", "cold-1", "telemetry")
    assert t == "edgehouse/v1/site-a/cold-1/telemetry"
    assert str(parse_topic(t)) == t
    g = gateway_topic("site-a", "gw-1", "alert")
    assert g == "edgehouse/v1/site-a/gw/gw-1/alert"
    assert str(parse_topic(g)) == g
    for bad in ["other/v1/a/b/telemetry", "edgehouse/v1/a/b/pressure", "edgehouse/v1/a/b/c/telemetry", "edgehouse/v1/+/b/scan"]:
        with pytest.raises(TopicError):
            parse_topic(bad)
    with pytest.raises(TopicError):
        device_topic("site a", "d", "scan")


def test_sync_batch_and_ack() -> None:
    msg = TelemetryMessage(
        msg_id="m", device_id="d1", boot_id="b", seq=1, ts=5,
        body=TelemetryBody(readings=(Reading(metric="power_w", value=120.0),)),
    )
    rid = record_id("telemetry", "d1", "b", 1)
    batch = SyncBatch(gateway_id="gw1", batch_id="b1", sent_ts=9, agent_version="0.1.0",
                      records=(TelemetryRecord(id=rid, received_ts=6, msg=msg),))
    assert SyncBatch.model_validate_json(encode(batch)) == batch
    ack = SyncAck(batch_id="b1", stored=(rid,), duplicates=("x",))
    assert ack.settled == {rid, "x"}
    scan = ScanMessage(msg_id="s", device_id="r1", boot_id="b", seq=2, ts=5,
                       body=ScanBody(code_type="barcode", sku="SKU-1", location="A1", direction="pick", qty=2,
                                     reader_id="r1"))
    assert scan.schema_ == "edgehouse.scan"


def test_a_header_spliced_with_record_json_is_the_batch() -> None:
    """A gateway writes records as JSON once (its outbox) and splices them into a batch."""
    msg = TelemetryMessage(
        msg_id="m", device_id="d1", boot_id="b", seq=1, ts=5,
        body=TelemetryBody(readings=(Reading(metric="power_w", value=120.0),)),
    )
    records = tuple(TelemetryRecord(id=record_id("telemetry", "d1", "b", i), received_ts=6, msg=msg) for i in (1, 2))
    header = SyncBatchHeader(gateway_id="gw1", batch_id="gw1.b1", sent_ts=9, agent_version="0.1.0")
    spliced = header.batch_json(r.model_dump_json(by_alias=True) for r in records)
    batch = SyncBatch(**header.model_dump(), records=records)
    assert SyncBatch.model_validate_json(spliced) == batch
    assert json.loads(spliced) == json.loads(encode(batch))


def test_record_kinds_are_the_record_models_kinds() -> None:
    kinds = [m.model_fields["kind"].default for m in get_args(get_args(SyncRecord)[0])]
    assert RECORD_KINDS + tuple(sorted(BATCH_V2_KINDS)) == tuple(kinds) and len(set(kinds)) == 7
    assert DEVICE_RECORD_KINDS == ("telemetry", "scan", "device_status")
    assert set(RECORD_KIND_OF_TOPIC.values()) == set(DEVICE_RECORD_KINDS)
    assert set(RECORD_KIND_OF_TOPIC) == {k.value for k in DeviceTopicKind}


def test_committed_schemas_match_versions() -> None:
    """Changing a wire model without bumping its ``v`` (and exporting) fails here."""
    assert drift() == []


@pytest.mark.parametrize(("raw", "reason"), [
    (b'{"v": 1}', "missing field 'schema'"),
    (b'{"schema": "edgehouse.bogus"}', ("unknown schema 'edgehouse.bogus' (expected one of "
                                        "'edgehouse.telemetry', 'edgehouse.scan', 'edgehouse.status')")),
])
def test_a_missing_or_unknown_schema_is_named_in_wire_terms(raw: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as err:
        decode_device_message(raw)
    assert (err.value.field, err.value.reason) == ("schema", reason)
