"""The columnar sync encoding: it decodes to exactly the batch that was encoded, and refuses malformed documents
naming the field."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from protocols import SyncBatch, SyncBatchHeader, record_id
from protocols.columnar import SCHEMA, ColumnarError, decode, encode

BASE_TS = 1_700_000_000_000
GW = "gw-1"
LIMIT = 10_000_000


def header(v: int = 2) -> SyncBatchHeader:
    return SyncBatchHeader(v=v, gateway_id=GW, batch_id="b-1", sent_ts=BASE_TS, agent_version="0.1.0")


def telemetry(device: str, seq: int, rng: random.Random) -> dict[str, Any]:
    return {
        "kind": "telemetry", "id": record_id("telemetry", device, "b1", seq), "received_ts": BASE_TS + seq * 30_000 + 7,
        "msg": {"schema": "edgehouse.telemetry", "v": 1, "msg_id": f"{rng.getrandbits(96):024x}",
                "device_id": device, "boot_id": "b1", "seq": seq, "ts": BASE_TS + seq * 30_000,
                "body": {"readings": [{"metric": "temperature_c", "value": round(rng.uniform(2, 6), 2)},
                                      {"metric": "door_open", "value": float(rng.random() < 0.1)},
                                      {"metric": "power_w", "value": rng.uniform(100, 900)}]}},
    }


def scan(device: str, seq: int, rfid: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"code_type": "rfid" if rfid else "barcode", "sku": f"SKU-{seq % 7}", "location": "A-01",
                            "direction": "pick", "qty": 1 + seq % 3, "reader_id": device}
    if rfid:
        body["tag_id"] = f"tag-{seq}"
    return {"kind": "scan", "id": record_id("scan", device, "b2", seq), "received_ts": BASE_TS + seq,
            "msg": {"schema": "edgehouse.scan", "v": 1, "msg_id": f"s{seq}", "device_id": device, "boot_id": "b2",
                    "seq": seq, "ts": BASE_TS + seq, "body": body}}


def alert(n: int, state: str) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "schema": "edgehouse.alert", "v": 1, "alert_id": f"a-{n}-{state}", "gateway_id": GW, "kind": "anomaly",
        "state": state, "severity": "critical", "ts": BASE_TS + n, "message": "temperature drift",
        "device_id": "cold-1", "metric": "temperature_c", "score": 0.97, "threshold": 0.8}
    if state == "raised":  # the clear carries fewer fields: another group, its place in the batch kept
        payload.update(expected=4.0, observed=9.5)
    return {"kind": "alert", "id": f"alert:a-{n}-{state}", "alert": payload}


def mixed(n: int = 300) -> list[dict[str, Any]]:
    rng = random.Random(4)
    out: list[dict[str, Any]] = []
    seqs: dict[str, int] = {}
    for i in range(n):
        device = rng.choice(["cold-1", "cold-2", "reader-1", "reader-2"])
        seq = seqs[device] = seqs.get(device, -1) + 1
        out.append(telemetry(device, seq, rng) if device.startswith("cold") else scan(device, seq, i % 2 == 0))
        if i % 50 == 0:
            out.append(alert(i, "raised"))
            out.append(alert(i, "cleared"))
    return out


def texts(records: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(r, separators=(",", ":")) for r in records]


def roundtrip(records: list[dict[str, Any]]) -> SyncBatch:
    doc = encode(header(), texts(records))
    return SyncBatch.model_validate_json(decode(doc, LIMIT))


def test_decodes_to_the_same_records_gateway_records_in_their_places() -> None:
    records = mixed()
    expected = SyncBatch.model_validate_json(header().batch_json(texts(records)))
    got = roundtrip(records)
    assert got.model_dump(exclude={"records"}) == expected.model_dump(exclude={"records"})
    assert sorted(got.records, key=lambda r: r.id) == sorted(expected.records, key=lambda r: r.id)
    assert len(got.records) == len(records)
    places = {i: r["id"] for i, r in enumerate(records) if r["kind"] == "alert"}
    assert {i: got.records[i].id for i in places} == places  # raise before clear, as sent
    device = [r.id for r in got.records if r.kind != "alert"]
    for dev in ("cold-1", "cold-2"):  # records of one device and shape stay in their order
        mine = [i for i in device if f":{dev}:" in i]
        assert mine == [r["id"] for r in records if f":{dev}:" in r["id"]]


def test_floats_survive_exactly_and_ids_that_are_not_derived_are_kept() -> None:
    rng = random.Random(1)
    records = [telemetry("cold-1", i, rng) for i in range(50)]
    records[3]["msg"]["body"]["readings"][0]["value"] = 0.1 + 0.2  # not a short decimal
    records[4]["id"] = "telemetry:cold-1:b1:999"  # wrong id: carried as is, refused later by the cloud
    got = {r.msg.seq: r for r in roundtrip(records).records}  # type: ignore[union-attr]
    assert got[3].msg.body.readings[0].value == 0.1 + 0.2  # type: ignore[union-attr]
    assert got[4].id == "telemetry:cold-1:b1:999"
    values = [got[i].msg.body.readings[2].value for i in range(50)]  # type: ignore[union-attr]
    assert values == [r["msg"]["body"]["readings"][2]["value"] for r in records]


def test_it_is_smaller_than_the_json_batch() -> None:
    records = mixed(1000)
    assert len(encode(header(), texts(records))) < 0.5 * len(header().batch_json(texts(records)))


def _doc(records: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(json.loads(encode(header(), texts(records))))


def _refused(doc: dict[str, Any], limit: int = LIMIT) -> ColumnarError:
    with pytest.raises(ColumnarError) as info:
        decode(json.dumps(doc).encode(), limit)
    return info.value


def test_malformed_documents_name_the_field() -> None:
    base = _doc(mixed(40))
    assert _refused({**base, "schema": "edgehouse.sync_batch"}).field == "schema"
    assert _refused({**base, "v": 2}).field == "v"
    assert _refused({**base, "v": True}).field == "v"
    assert _refused({**base, "groups": []}).field == "groups"
    bad = json.loads(json.dumps(base))
    bad["groups"][0]["cols"][1] = {"l": [1]}
    assert _refused(bad).field == "groups.0.cols.1.l"
    bad = json.loads(json.dumps(base))
    bad["groups"][0]["cols"][0] = {"z": 1}
    assert _refused(bad).field == "groups.0.cols.0"
    bad = json.loads(json.dumps(base))
    bad["groups"][0]["paths"][0] = [3]
    assert _refused(bad).field == "groups.0.paths.0"
    bad = json.loads(json.dumps(base))
    placed = [i for i, g in enumerate(bad["groups"]) if "at" in g]
    bad["groups"][placed[1]]["at"] = {"d": [bad["groups"][placed[0]]["at"]["d"][0]] + [1] * (
        bad["groups"][placed[1]]["n"] - 1)}
    assert _refused(bad).field == f"groups.{placed[1]}.at"
    bad = json.loads(json.dumps(base))
    bad["groups"][0]["cols"] = [{"w": 4, "b64": "!!"} for _ in bad["groups"][0]["cols"]]
    assert _refused(bad).field == "groups.0.cols.0.b64"
    bad = json.loads(json.dumps(base))
    bad["groups"][0]["cols"][2] = {"d": [1.5] * bad["groups"][0]["n"]}
    assert _refused(bad).field == "groups.0.cols.2.d"
    assert _refused({**base, "extra": 1}).field == "body"
    with pytest.raises(ColumnarError) as info:
        decode(b"<html>portal</html>", LIMIT)
    assert info.value.field == "body"


def test_a_constant_that_expands_past_the_limit_is_refused() -> None:
    doc = {"schema": SCHEMA, "v": 1, "batch": header().model_dump(mode="json", by_alias=True),
           "groups": [{"n": 5000, "at": {"d": [0] + [1] * 4999}, "ids": "column", "paths": [["kind"], ["id"]],
                       "cols": [{"c": "x" * 60_000}, {"c": "y"}]}]}
    assert _refused(doc, limit=64 * 1024 * 1024).field == "groups.0.cols.0"


def test_more_records_than_a_batch_holds_are_refused() -> None:
    doc = {"schema": SCHEMA, "v": 1, "batch": header().model_dump(mode="json", by_alias=True),
           "groups": [{"n": 3000, "at": {"d": [0] + [1] * 2999}, "ids": "column", "paths": [["kind"]],
                       "cols": [{"c": "scan"}]}] * 2}
    assert _refused(doc).field == "groups"
