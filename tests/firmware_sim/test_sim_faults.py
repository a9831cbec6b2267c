"""Every fault type is injected and labelled, and the summary's arithmetic is exact."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import pytest
from sim_fleets import mixed, one_gateway

from firmware_sim.emission import Emission
from firmware_sim.faults import FaultConfig
from firmware_sim.generator import simulate
from firmware_sim.truth import Summary, TruthLedger, TruthWriter, read_truth
from protocols import DecodeError, decode_device_message

FAULTS = FaultConfig(
    duplicates=0.03, reorder=0.03, late=0.03, malformed=0.03, reboots=0.004, clock_skew=0.004, disconnects=0.004,
    disconnect_s=(30.0, 120.0),
)


Run = tuple[list[Emission], list[dict[str, object]], Summary]


@pytest.fixture(scope="module")
def all_faults(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Six simulated hours of a mixed fleet with every fault on, through a real truth file."""
    tmp_path = tmp_path_factory.mktemp("truth")
    fleet = mixed(seed=11)
    writer = TruthWriter(tmp_path / "truth.jsonl")
    ledger = TruthLedger(writer)
    emissions = []
    for e in simulate(fleet, 6 * 3600, FAULTS):
        ledger.record(e)
        emissions.append(e)
    writer.close(ledger.summary())
    events, summary = read_truth(tmp_path / "truth.jsonl")
    return emissions, events, summary


def test_every_fault_type_appears_in_the_ground_truth(all_faults: Run) -> None:
    _, events, summary = all_faults
    faults = Counter(ev["fault"] for ev in events if ev["type"] == "fault")
    assert set(faults) == {"duplicate", "reorder", "late", "malformed", "reboot", "clock_skew", "disconnect"}
    assert summary.faults == dict(faults)
    kinds = Counter(ev["malformed_kind"] for ev in events if ev.get("fault") == "malformed")
    assert set(kinds) == {"invalid_json", "wrong_type", "out_of_range", "unknown_field", "truncated"}
    for ev in events:
        if ev["type"] == "fault":
            assert {"device_id", "site", "seq", "boot_id"} <= set(ev)


def test_summary_matches_an_independent_count_of_what_was_published(all_faults: Run) -> None:
    emissions, _, summary = all_faults
    published = [e for e in emissions if e.publishes]
    seen: set[tuple[str, str, int]] = set()
    unique: Counter[str] = Counter()
    malformed = duplicates = 0
    tags: Counter[tuple[str, str]] = Counter()
    for e in published:
        try:
            msg = decode_device_message(e.payload, e.kind)
        except DecodeError:
            malformed += 1
            assert e.malformed
            continue
        assert not e.malformed
        if msg.dedup_key in seen:
            duplicates += 1
            continue
        seen.add(msg.dedup_key)
        unique[e.kind] += 1
        if msg.schema_ == "edgehouse.scan" and msg.body.tag_id is not None:
            tags[(msg.body.reader_id, msg.body.tag_id)] += 1
    repeats = sum(n - 1 for n in tags.values())
    assert summary.published == len(published)
    assert summary.malformed == malformed > 0
    assert summary.duplicates == duplicates > 0
    assert summary.unique.model_dump() == {"telemetry": unique["telemetry"], "scan": unique["scan"],
                                           "status": unique["status"]}
    assert summary.rfid_burst_repeats == repeats > 0
    assert summary.expected_stored.telemetry == unique["telemetry"]
    assert summary.expected_stored.scan == unique["scan"] - repeats
    assert summary.published == (sum(unique.values()) + summary.duplicates + summary.malformed)
    assert summary.wills == sum(e.action == "disconnect" for e in emissions)


def test_seq_is_monotonic_per_boot_and_restarts_on_reboot(all_faults: Run) -> None:
    emissions, events, _ = all_faults
    by_boot: dict[tuple[str, str], list[int]] = defaultdict(list)
    for e in emissions:
        if e.publishes and not e.malformed and not e.duplicate:
            doc = json.loads(e.payload)
            by_boot[(doc["device_id"], doc["boot_id"])].append(doc["seq"])
    for seqs in by_boot.values():
        assert len(seqs) == len(set(seqs))
    reboots = [ev for ev in events if ev.get("fault") == "reboot"]
    assert reboots
    for ev in reboots:
        seqs = by_boot[(ev["device_id"], ev["boot_id"])]
        assert min(seqs) == 0 and ev["old_boot_id"] != ev["boot_id"]
        assert (ev["device_id"], ev["old_boot_id"]) in by_boot
    msg_ids = Counter(json.loads(e.payload)["msg_id"] for e in emissions
                      if e.publishes and not e.malformed and not e.duplicate)
    assert max(msg_ids.values()) == 1


def _device_runs(faults: FaultConfig, hours: float = 6.0) -> tuple[dict[str, list[Emission]], list[dict[str, object]]]:
    ledger = TruthLedger()
    per_device: dict[str, list[Emission]] = defaultdict(list)
    events: list[dict[str, object]] = []
    for e in simulate(mixed(seed=5), hours * 3600, faults):
        ledger.record(e)
        per_device[e.device_id].append(e)
        events.extend(e.events)
    return per_device, events


def _doc(e: Emission) -> dict[str, object]:
    return json.loads(e.payload)


def test_duplicates_reorder_and_late_do_what_they_say() -> None:
    per_device, events = _device_runs(FaultConfig(duplicates=0.05, reorder=0.05, late=0.05))
    checked: Counter[str] = Counter()
    published = {d: [e for e in es if e.publishes] for d, es in per_device.items()}
    where: dict[tuple[str, str, int], list[int]] = defaultdict(list)
    for d, es in published.items():
        for k, e in enumerate(es):
            doc = _doc(e)
            where[(d, str(doc["boot_id"]), int(doc["seq"]))].append(k)
    for ev in events:
        if ev["type"] != "fault":
            continue
        dev = published[str(ev["device_id"])]
        idx = where[(str(ev["device_id"]), str(ev["boot_id"]), int(ev["seq"]))]
        first = dev[idx[0]]
        if ev["fault"] == "duplicate":
            assert len(idx) == 2 and idx[1] == idx[0] + 1 and dev[idx[1]].payload == first.payload
            assert dev[idx[1]].duplicate
        elif ev["fault"] == "late":
            assert first.send_ms - int(_doc(first)["ts"]) == ev["delay_ms"] >= 20_000
        elif ev["fault"] == "reorder":
            before = dev[idx[0] - 1]
            assert _doc(before)["seq"] == ev["swapped_with"] > ev["seq"]
        checked[ev["fault"]] += 1
    assert set(checked) == {"duplicate", "late", "reorder"}


def test_clock_skew_offsets_the_device_clock_from_the_labelled_seq() -> None:
    per_device, events = _device_runs(FaultConfig(clock_skew=0.02))
    skews = [ev for ev in events if ev.get("fault") == "clock_skew"]
    assert skews
    for device_id, emissions in per_device.items():
        changes = {int(ev["seq"]): int(ev["offset_ms"]) for ev in skews if ev["device_id"] == device_id}
        offset = 0
        for e in emissions:
            if e.kind != "telemetry":
                continue
            doc = _doc(e)
            offset = changes.get(int(doc["seq"]), offset)
            assert int(doc["ts"]) - e.send_ms == offset


def test_disconnect_buffers_messages_and_sends_them_after_the_reconnect() -> None:
    per_device, events = _device_runs(FaultConfig(disconnects=0.01, disconnect_s=(60.0, 300.0)))
    discs = [ev for ev in events if ev.get("fault") == "disconnect"]
    assert sum(int(ev["buffered"]) > 0 for ev in discs) >= 3
    for ev in discs:
        dev = per_device[ev["device_id"]]
        i = next(k for k, e in enumerate(dev) if ev in e.events)
        connect = dev[i]
        assert connect.action == "connect" and connect.send_ms == ev["end_ts"]
        assert _doc(connect)["body"]["state"] == "online"
        assert json.loads(connect.will_payload)["body"]["state"] == "offline"
        j = max(k for k in range(i) if dev[k].action == "disconnect")
        assert dev[j].send_ms == ev["start_ts"]
        assert not any(e.publishes for e in dev[j + 1 : i])  # silent while offline
        backlog = [e for e in dev[i + 1 :] if e.publishes][: int(ev["buffered"])]
        assert len(backlog) == ev["buffered"]
        for e in backlog:
            assert e.send_ms == connect.send_ms
            assert int(ev["start_ts"]) <= int(_doc(e)["ts"]) <= int(ev["end_ts"])
        seqs = [int(_doc(e)["seq"]) for e in backlog]
        assert seqs == sorted(seqs) and (not seqs or seqs[-1] < int(_doc(connect)["seq"]))


def test_a_malformed_cycle_count_never_decodes() -> None:
    # qty 0 is a valid count (an empty slot): an out-of-range count must break the message otherwise,
    # or the gateway stores it while the truth counts it malformed (one "stored twice" per such count)
    fleet = one_gateway([{"kind": "barcode_scanner", "interval_s": 300, "skus": 10, "mean_daily_picks": 50,
                          "count_every_days": 0.05, "open_hour": 0, "close_hour": 24}], seed=3)
    malformed = [e for e in simulate(fleet, 2 * 86_400, FaultConfig(malformed=1.0)) if e.malformed]
    counts = [e for e in malformed if b'"direction":"count"' in e.payload]
    assert len(counts) > 50
    for e in malformed:
        with pytest.raises(DecodeError):
            decode_device_message(e.payload, e.kind)
