"""The fast validation path of sync batches (``cloud.services.sync_fast``) against the model path
(``protocols.SyncBatch`` and ``cloud.services.sync_plan.plan_batch``): over valid batches and every field of
every record kind made wrong (wrong type, out of range, bad pattern, missing, extra), the same accept/reject,
the same rows (values and their types), and through ``cloud.services.sync.plan_json`` the same
``ValidationError`` (so the same 422 naming ``records.N.<field>``). Pure: no database.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from cloud_testkit import (
    BASE_TS,
    GATEWAY_ID,
    alert_record,
    batch,
    forecast_record,
    mixed_records,
    scan_record,
    status_record,
    telemetry_record,
)
from pydantic import ValidationError

from cloud.services import sync, sync_fast
from cloud.services.sync_plan import PlannedBatch, plan_batch
from protocols import (
    StockDiscrepancy,
    StockDiscrepancyRecord,
    StockPosition,
    StockRecord,
    SyncBatch,
    discrepancy_record_id,
    record_id,
    stock_record_id,
)

NOW = BASE_TS + 99_000
#: Values every leaf is replaced by in turn: wrong types, out of range, bad patterns, edge values.
WRONG: tuple[Any, ...] = (None, True, False, 0, -1, 1, 7, 2**53, -(2**53), 5.5, 0.0, 1.0, -0.0, 1e308, 1e-12,
                          0.9999999999, 1.0000000001, float("inf"), float("nan"), "", "x",
                          "5", "bad value!", "-x", "a" * 65, "a" * 201, "a" * 600, [], [1], {}, {"a": 1},
                          # a final newline (Python's ``$`` would match before it), a lone surrogate, big ints
                          "cold-1\n", "x\ud800", 2**63, 2**64 + 1, -(2**63) - 1)


def _stock() -> dict[str, Any]:
    p = StockPosition(gateway_id=GATEWAY_ID, site="berlin", location="A-01", sku="SKU-1", on_hand=4, negative=False,
                      version=3, last_scan_ts=BASE_TS, updated_ts=BASE_TS + 5)
    return StockRecord(id=stock_record_id("berlin", "A-01", "SKU-1", 3), position=p).model_dump(by_alias=True,
                                                                                                mode="json")


def _discrepancy() -> dict[str, Any]:
    d = StockDiscrepancy(gateway_id=GATEWAY_ID, site="berlin", location="A-01", sku="SKU-1", device_id="scan-1",
                         boot_id="b1", seq=4, ts=BASE_TS, counted=3, expected=5, delta=-2, revision=1,
                         updated_ts=BASE_TS + 100)
    return StockDiscrepancyRecord(id=discrepancy_record_id("scan-1", "b1", 4, 1),
                                  discrepancy=d).model_dump(by_alias=True, mode="json")


def _rfid_scan() -> dict[str, Any]:
    rec = scan_record("reader-2", 9)
    rec["msg"]["body"].update(code_type="rfid", tag_id="E2000001")
    return rec


def _count_scan() -> dict[str, Any]:
    rec = scan_record("reader-3", 11)
    rec["msg"]["v"] = 2
    rec["msg"]["body"].update(direction="count", qty=0)
    return rec


def _bare_status() -> dict[str, Any]:
    rec = status_record("cold-4", 3)
    del rec["msg"]["body"]["uptime_s"]
    rec["msg"]["body"]["reason"] = "boot"
    return rec


#: One of each record shape (device records with their optional fields given and left out).
SAMPLES: dict[str, Any] = {
    "telemetry": telemetry_record("cold-1", 1),
    "scan": scan_record("reader-1", 2),
    "rfid_scan": _rfid_scan(),
    "count_scan": _count_scan(),
    "status": status_record("cold-2", 5),
    "bare_status": _bare_status(),
    "alert": alert_record(GATEWAY_ID, 1),
    "forecast": forecast_record(GATEWAY_ID, 1),
    "stock": _stock(),
    "discrepancy": _discrepancy(),
}


def _doc(records: list[dict[str, Any]], v: int = 2) -> dict[str, Any]:
    return {**batch(GATEWAY_ID, records), "v": v}


def _rows_repr(planned: PlannedBatch) -> str:
    """Everything a plan holds, with the types of its values (``5 == 5.0`` must not hide an int row)."""
    return repr((planned.gateway_id, planned.batch_id, planned.agent_version, planned.plan))


def _compare_raw(raw: bytes) -> bool:
    """Assert both paths agree on the JSON text ``raw``; whether the fast path accepted it."""
    fast = sync_fast.plan_json(raw, NOW)
    try:
        model: PlannedBatch | ValidationError = plan_batch(SyncBatch.model_validate_json(raw), NOW)
    except ValidationError as exc:
        model = exc
    if isinstance(model, ValidationError):
        assert fast is None, f"the fast path accepted what SyncBatch refuses: {model.errors()[:2]}"
        with pytest.raises(ValidationError) as caught:
            sync.plan_json(raw, NOW)
        assert json.loads(caught.value.json()) == json.loads(model.json())
        return False
    assert _rows_repr(sync.plan_json(raw, NOW)) == _rows_repr(model)
    if fast is not None:
        assert _rows_repr(fast) == _rows_repr(model)
    return fast is not None


def _compare(doc: Any) -> bool:
    """Assert both paths agree on ``doc``; whether the fast path accepted it."""
    return _compare_raw(json.dumps(doc).encode())


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaves(value, (*path, i))
    if path:
        yield path


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def _delete(doc: Any, path: tuple[Any, ...]) -> None:
    for key in path[:-1]:
        doc = doc[key]
    del doc[path[-1]]


def _mutants(record: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``record`` with each field (at every depth) missing, replaced by each of :data:`WRONG`, and with an
    unknown key added to each object."""
    for path in _leaves(record):
        gone = copy.deepcopy(record)
        _delete(gone, path)
        yield gone
        for value in WRONG:
            bad = copy.deepcopy(record)
            _set(bad, path, value)
            yield bad
    for path in [(), *_leaves(record)]:
        extra = copy.deepcopy(record)
        target: Any = extra
        for key in path:
            target = target[key]
        if isinstance(target, dict):
            target["unexpected"] = 1
            yield extra


def test_valid_batches_take_the_fast_path_with_the_same_rows() -> None:
    records = mixed_records(GATEWAY_ID, 0, 1000, devices=50)
    assert _compare(_doc(records, v=1))
    assert _compare(_doc([*records[:200], *SAMPLES.values()]))
    assert _compare(_doc(list(SAMPLES.values())))
    for sample in SAMPLES.values():
        assert _compare(_doc([sample]))


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_field_made_wrong_is_judged_alike(name: str) -> None:
    neighbours = [telemetry_record("cold-9", 77), scan_record("reader-9", 78)]
    judged = 0
    for mutant in _mutants(SAMPLES[name]):
        _compare(_doc([*neighbours, mutant]))
        _compare(_doc([mutant, *neighbours], v=1))
        judged += 1
    assert judged > 40


def _telemetry_with(readings: list[dict[str, Any]], v: int = 1) -> dict[str, Any]:
    rec = telemetry_record("cold-5", 3)
    rec["msg"].update(v=v, body={"readings": readings})
    return rec


CROSS_FIELD: dict[str, tuple[list[dict[str, Any]], int, bool]] = {
    # name: (records, batch version, accepted by SyncBatch)
    "metric twice": ([_telemetry_with([{"metric": "power_w", "value": 1.0}] * 2)], 2, False),
    "v2 metric in a v1 message": ([_telemetry_with([{"metric": "pressure_bar", "value": 3.0}])], 2, False),
    "v2 metric in a v2 message": ([_telemetry_with([{"metric": "pressure_bar", "value": 3.0}], v=2)], 2, True),
    "telemetry v2 in a v1 batch": ([_telemetry_with([{"metric": "power_w", "value": 1.0}], v=2)], 1, False),
    "telemetry v left out in a v1 batch": ([{**telemetry_record(), "msg": {
        k: v for k, v in telemetry_record()["msg"].items() if k != "v"}}], 1, False),
    "value out of range": ([_telemetry_with([{"metric": "temperature_c", "value": 80.5}])], 2, False),
    "value at the top of its range": ([_telemetry_with([{"metric": "temperature_c", "value": 80}])], 2, True),
    "door half open": ([_telemetry_with([{"metric": "door_open", "value": 0.5}])], 2, False),
    "door nearly open": ([_telemetry_with([{"metric": "door_open", "value": 0.9999999999}])], 2, False),
    "door barely open": ([_telemetry_with([{"metric": "door_open", "value": 1e-12}])], 2, False),
    "door closed as -0.0": ([_telemetry_with([{"metric": "door_open", "value": -0.0}])], 2, True),
    "value just above its range": ([_telemetry_with([{"metric": "temperature_c", "value": 80.00000000001}])], 2,
                                   False),
    "value just below its range": ([_telemetry_with([{"metric": "humidity_pct", "value": -1e-300}])], 2, False),
    "door open as an int": ([_telemetry_with([{"metric": "door_open", "value": 1}])], 2, True),
    "unknown metric": ([_telemetry_with([{"metric": "speed", "value": 1.0}])], 2, False),
    "no readings": ([_telemetry_with([])], 2, False),
    "17 readings": ([_telemetry_with([{"metric": "power_w", "value": 1.0}] * 17)], 2, False),
    "rfid without a tag": ([{**_rfid_scan(), "msg": {**_rfid_scan()["msg"], "body": {
        k: v for k, v in _rfid_scan()["msg"]["body"].items() if k != "tag_id"}}}], 2, False),
    "pick of 0 units": ([{**scan_record(), "msg": {**scan_record()["msg"], "body": {
        **scan_record()["msg"]["body"], "qty": 0}}}], 2, False),
    "count in a v1 scan": ([{**_count_scan(), "msg": {**_count_scan()["msg"], "v": 1}}], 2, False),
    "count scan in a v1 batch": ([_count_scan()], 1, True),
    "stock in a v1 batch": ([_stock()], 1, False),
    "uptime as an int": ([{**status_record(), "msg": {**status_record()["msg"], "body": {
        **status_record()["msg"]["body"], "uptime_s": 7}}}], 2, True),
    "id not its content": ([{**telemetry_record(), "id": record_id("telemetry", "cold-1", "b1", 999)}], 2, True),
    "record repeated": ([telemetry_record(), telemetry_record(), scan_record()], 2, True),
    "repeated id, other content": ([telemetry_record(), {**telemetry_record(temp=9.0)}], 2, True),
    "kind left out": ([{k: v for k, v in telemetry_record().items() if k != "kind"}], 2, False),
    "schema_ spelled by name": ([{**scan_record(), "msg": {
        ("schema_" if k == "schema" else k): v for k, v in scan_record()["msg"].items()}}], 2, True),
    "no records": ([], 2, False),
}


@pytest.mark.parametrize("name", sorted(CROSS_FIELD))
def test_cross_field_rules_are_judged_alike(name: str) -> None:
    records, v, accepted = CROSS_FIELD[name]
    doc = _doc(records, v)
    _compare(doc)
    try:
        SyncBatch.model_validate_json(json.dumps(doc))
    except ValidationError:
        assert not accepted
    else:
        assert accepted


def test_json_text_beyond_what_json_dumps_writes_is_judged_alike() -> None:
    text = json.dumps(_doc([telemetry_record("cold-1", 1), status_record("cold-2", 5)]))
    value = json.dumps(telemetry_record("cold-1", 1)["msg"]["body"]["readings"][0]["value"])
    for variant in (
        text.replace(f'"value": {value}', '"value": 1e999', 1),  # beyond a float
        text.replace(f'"value": {value}', '"value": -1e999', 1),
        text.replace(f'"value": {value}', '"value": NaN', 1),
        text.replace(f'"value": {value}', '"value": Infinity', 1),
        text.replace(f'"value": {value}', f'"value": {value}, "value": 1e6', 1),  # a key twice: the last counts
        text.replace('"uptime_s": ', '"uptime_s": 1e999, "uptime_s": ', 1),
        text.replace('"device_id": "cold-1"', '"device_id": "cold-1", "device_id": "cold-1\\n"', 1),
        text.replace('"device_id": "cold-1"', '"device_id": "cold-\\u0031"', 1),  # an escape for a plain char
        text.replace('"device_id": "cold-1"', '"device_id": "cold-1\\u0000"', 1),
        text.replace('"kind": "telemetry"', '"kind": "telemetry", "kind": "scan"', 1),
        text + " ",
        text + " x",
        "\ufeff" + text,
    ):
        assert variant != text
        _compare_raw(variant.encode())


def test_batch_header_fields_made_wrong_are_judged_alike() -> None:
    doc = _doc([telemetry_record(), scan_record()])
    for key in ("schema", "v", "gateway_id", "batch_id", "sent_ts", "agent_version"):
        gone = {k: v for k, v in doc.items() if k != key}
        _compare(gone)
        for value in WRONG:
            _compare({**doc, key: value})
    _compare({**doc, "unexpected": 1})
    _compare({**doc, "records": [telemetry_record(seq=i) for i in range(5001)]})
    for not_a_batch in ([], "x", 5, None):
        _compare(not_a_batch)
