"""The column-wise path of columnar batches (``cloud.services.sync_columnar``) against expanding the document and
validating its JSON (``protocols.columnar.decode`` then ``cloud.services.sync.plan_json``): over valid batches
encoded by the agent's encoder, records with every field made wrong (encoded as the agent would send them), and
documents made wrong column by column (types, ranges, truncated columns, paths, ids), the same accept/reject, the
same error (BadRequest naming the columnar field, or the ValidationError naming ``records.N.<field>``) and the
same rows. Pure: no database.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from cloud_testkit import GATEWAY_ID, mixed_records, scan_record, status_record, telemetry_record
from pydantic import ValidationError
from test_cloud_sync_fast import CROSS_FIELD, NOW, SAMPLES, WRONG, _doc, _mutants

from cloud.services import sync, sync_columnar
from cloud.services.errors import BadRequest
from protocols import SyncBatchHeader
from protocols.columnar import ColumnarError, decode, encode

LIMIT = 8 * 1024 * 1024


def _encode(doc: dict[str, Any]) -> bytes:
    header = SyncBatchHeader.model_validate({k: v for k, v in doc.items() if k != "records"})
    return encode(header, (json.dumps(r) for r in doc["records"]))


def _outcome(run: Any) -> tuple[str, Any]:
    try:
        planned = run()
    except ValidationError as exc:
        return "invalid", json.loads(exc.json())
    except BadRequest as exc:
        return "bad", (exc.field, exc.message)
    except Exception as exc:  # noqa: BLE001 - whatever the expanding path raises, the other must raise alike
        return "error", (type(exc).__name__, str(exc))
    return "ok", repr((planned.gateway_id, planned.batch_id, planned.agent_version, planned.plan))


def _expanded(document: bytes) -> Any:
    try:
        batch_json = decode(document, LIMIT)
    except ColumnarError as exc:
        raise BadRequest(str(exc), exc.field) from None
    return sync.plan_json(batch_json, NOW)


def _compare(document: bytes) -> bool:
    """Assert both paths judge ``document`` alike; whether the column-wise path took it."""
    reference = _outcome(lambda: _expanded(document))
    assert _outcome(lambda: sync_columnar.plan_columnar(document, LIMIT, NOW)) == reference
    taken = sync_columnar.plan_document(document, LIMIT, NOW)
    if reference[0] != "ok":
        assert taken is None, f"the column-wise path took what the expanding path refuses: {reference}"
        return False
    if taken is not None:
        assert _outcome(lambda: taken) == reference
    return taken is not None


def test_valid_batches_take_the_column_wise_path_with_the_same_rows() -> None:
    records = mixed_records(GATEWAY_ID, 0, 1000, devices=200)
    assert _compare(_encode(_doc(records, v=1)))
    assert _compare(_encode(_doc(mixed_records(GATEWAY_ID, 0, 1000, devices=5))))
    assert _compare(_encode(_doc([*records[:200], *SAMPLES.values()])))
    assert _compare(_encode(_doc([*records[:50], *records[:50]])))  # repeated inside the batch
    for sample in SAMPLES.values():
        assert _compare(_encode(_doc([sample])))


def test_ids_that_do_not_match_the_content_are_rejected_alike() -> None:
    wrong = [telemetry_record("cold-1", s) for s in range(4)]
    for i, rec in enumerate(wrong):
        rec["id"] = f"telemetry:cold-1:b1:{100 + i}"
    assert _compare(_encode(_doc([*wrong, telemetry_record("cold-1", 9)])))


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_record_field_made_wrong_is_judged_alike(name: str) -> None:
    neighbours = [telemetry_record("cold-9", 77), scan_record("reader-9", 78)]
    judged = 0
    for mutant in _mutants(SAMPLES[name]):
        try:
            documents = [_encode(_doc([*neighbours, mutant])), _encode(_doc([mutant, *neighbours], v=1))]
        except (ValueError, TypeError):  # NaN, infinity, a device_id of []: not what an agent can send
            continue
        for document in documents:
            _compare(document)
        judged += 1
    assert judged > 40


@pytest.mark.parametrize("name", sorted(CROSS_FIELD))
def test_cross_field_rules_are_judged_alike(name: str) -> None:
    records, v, _ = CROSS_FIELD[name]
    _compare(_encode(_doc([telemetry_record("cold-8", 1), *records], v=v)))


def _document_mutants(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``doc`` (a decoded columnar document) with each part of each group made wrong in turn."""
    for g, group in enumerate(doc["groups"]):
        for key in group:
            for value in (*WRONG, "column", "derived", {"d": [0]}):
                bad = copy.deepcopy(doc)
                bad["groups"][g][key] = value
                yield bad
        for c, col in enumerate(group["cols"]):
            for key, held in col.items():
                variants: list[Any] = list(WRONG)
                if isinstance(held, list):
                    variants += [held[:-1], [*held, held[-1]], [*held[:-1], 10**30], [*held[:-1], -(10**30)]]
                if isinstance(held, str):
                    variants += [held[:-1], held + held[-1]]
                for value in variants:
                    bad = copy.deepcopy(doc)
                    bad["groups"][g]["cols"][c][key] = value
                    yield bad
        for p in range(len(group["paths"])):
            gone = copy.deepcopy(doc)
            del gone["groups"][g]["paths"][p], gone["groups"][g]["cols"][p]
            yield gone
            twice = copy.deepcopy(doc)
            twice["groups"][g]["paths"].append(group["paths"][p])
            twice["groups"][g]["cols"].append(group["cols"][p])
            yield twice
            renamed = copy.deepcopy(doc)
            renamed["groups"][g]["paths"][p] = [*group["paths"][p][:-1], "unexpected"]
            yield renamed
    for key in doc["batch"]:
        for value in WRONG:
            bad = copy.deepcopy(doc)
            bad["batch"][key] = value
            yield bad
    yield {**doc, "groups": doc["groups"][:-1]}
    yield {**doc, "groups": [*doc["groups"], doc["groups"][0]]}


def test_documents_made_wrong_are_judged_alike() -> None:
    records = [telemetry_record("cold-1", s) for s in range(3)]
    records[1]["msg"]["body"]["readings"][0]["value"] = 5.5
    records += [scan_record("reader-1", 4), status_record("cold-2", 5), SAMPLES["alert"]]
    doc = json.loads(_encode(_doc(records)))
    taken = 0
    for mutant in _document_mutants(doc):
        taken += _compare(json.dumps(mutant).encode())
    assert taken > 0  # some wrong values are still valid (another reading, seq or ts)
