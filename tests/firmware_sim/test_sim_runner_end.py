"""A run's end (its deadline, its quota or ``stop()``) never skips a message it drew from the stream.

The publisher threads draw each emission from their stream, then check whether the timed phase is
over. An emission drawn at that moment used to be dropped while the final flush still sent what came
after it: the duplicate copy of a dropped original, or the repeat reads of an RFID tag whose first
read was dropped, went out flagged as a duplicate / repeat, so the gateway stored them but the ground
truth did not expect them (the demo's "stored twice 1" with nothing lost). Here the real gateway
ingest (``edge_agent.ingest_batch.BatchWriter``) stores what was published, and its counts must be
the summary's ``expected_stored`` exactly.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from sim_fleets import mixed

from edge_agent.inbound import Inbound
from edge_agent.ingest_batch import BatchWriter
from edge_agent.store import Store
from firmware_sim.config import Fleet
from firmware_sim.emission import Emission
from firmware_sim.faults import FaultConfig
from firmware_sim.runner import SimRunner
from firmware_sim.truth import Summary
from tests.helpers.mosquitto import Mosquitto

DEMO = Path(__file__).resolve().parents[2] / "firmware_sim" / "fleets" / "demo.toml"


@pytest.fixture()
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as b:
        yield b


class Published:
    """Every emission the runner executed (``on_publish`` is called from its publisher threads)."""

    def __init__(self) -> None:
        self.emissions: list[Emission] = []
        self._lock = threading.Lock()

    def __call__(self, e: Emission) -> None:
        with self._lock:
            self.emissions.append(e)


def seq_gaps(emissions: list[Emission]) -> dict[tuple[str, str], list[int]]:
    """Per device boot, the seqs never published (a connect's will takes the seq after its birth)."""
    seqs: dict[tuple[str, str], set[int]] = defaultdict(set)
    for e in emissions:
        seqs[(e.device_id, e.boot_id)].add(e.seq)
        if e.action == "connect":
            seqs[(e.device_id, e.boot_id)].add(e.seq + 1)
    return {k: gaps for k, s in seqs.items() if (gaps := sorted(set(range(max(s) + 1)) - s))}


def gateway_stored(fleet: Fleet, emissions: list[Emission], tmp_path: Path) -> dict[str, int]:
    """What the gateways' ingest stores from these messages, summed over sites."""
    tmp_path.mkdir(exist_ok=True)
    totals = {"telemetry": 0, "scan": 0}
    by_site: dict[str, list[Emission]] = defaultdict(list)
    for e in emissions:
        by_site[e.site].append(e)
    for site, site_emissions in by_site.items():
        store = Store(tmp_path / f"{site}.db")
        store.open()
        writer = BatchWriter(store.connect(), site, 2000, 4096)
        writer.load_state()
        batch = [Inbound(e.topic, e.payload, 0, 0) for e in site_emissions]
        for start in range(0, len(batch), 100):
            result = writer.write(batch[start : start + 100], 1)
            for kind in totals:
                totals[kind] += result.stored[kind]
    return totals


def run(runner: SimRunner) -> Summary:
    runner.start()
    summary = runner.join(60)
    assert summary is not None
    return summary


def test_a_run_ended_by_its_deadline_sends_what_it_drew(broker: Mosquitto, tmp_path: Path) -> None:
    fleet = Fleet.load(DEMO)  # the demo's fleet and faults: a run of 2 s reproduced the demo's miscount
    published = Published()
    summary = run(SimRunner(fleet, broker.host, broker.port, faults=fleet.config.faults, duration_s=2.0,
                            on_publish=published))
    assert summary.published == len(published.emissions) > 300
    assert seq_gaps(published.emissions) == {}
    exp = summary.expected_stored
    assert gateway_stored(fleet, published.emissions, tmp_path) == {"telemetry": exp.telemetry, "scan": exp.scan}


def test_a_run_ended_by_its_quota_or_stop_sends_what_it_drew(broker: Mosquitto, tmp_path: Path) -> None:
    fleet = mixed(seed=31)
    faults = FaultConfig(duplicates=0.5, reorder=0.05, malformed=0.05)
    for count in (201, 202, 203):  # the quota ends the run on an original or on its duplicate
        published = Published()
        summary = run(SimRunner(fleet, broker.host, broker.port, faults=faults, count=count, speed=3600.0,
                                on_publish=published, publishers=2))
        assert summary.published == len(published.emissions) >= count
        assert seq_gaps(published.emissions) == {}, count
        exp = summary.expected_stored
        stored = gateway_stored(fleet, published.emissions, tmp_path / str(count))
        assert stored == {"telemetry": exp.telemetry, "scan": exp.scan}, count
    published = Published()
    runner = SimRunner(fleet, broker.host, broker.port, faults=faults, speed=3600.0, on_publish=published)
    runner.start()
    deadline = time.monotonic() + 20
    while runner.stats().published < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    runner.stop()
    summary = runner.join(60)
    assert summary is not None and summary.published == len(published.emissions)
    assert seq_gaps(published.emissions) == {}
    exp = summary.expected_stored
    stored = gateway_stored(fleet, published.emissions, tmp_path / "stop")
    assert stored == {"telemetry": exp.telemetry, "scan": exp.scan}


def test_a_rate_run_stopped_early_sends_its_whole_pre_encoded_chunk(broker: Mosquitto, tmp_path: Path) -> None:
    """Rate mode draws each thread's share of ``count`` before the timed phase; stopped early it used to
    drop the rest of it (seq gaps, and the duplicate copies the flush sent of originals never sent)."""
    fleet = mixed(seed=32)
    faults = FaultConfig(duplicates=0.3, reorder=0.05, malformed=0.05)
    published = Published()
    count = 3000
    runner = SimRunner(fleet, broker.host, broker.port, faults=faults, count=count, rate=300.0,
                       on_publish=published, publishers=2)
    runner.start()
    deadline = time.monotonic() + 30
    while runner.stats().published < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    runner.stop()  # about 10 s before the rate would have sent the quota
    summary = runner.join(60)
    assert summary is not None and summary.published == len(published.emissions)
    assert summary.published >= count  # what was drawn for the timed phase went out, unpaced
    assert seq_gaps(published.emissions) == {}
    exp = summary.expected_stored
    stored = gateway_stored(fleet, published.emissions, tmp_path)
    assert stored == {"telemetry": exp.telemetry, "scan": exp.scan}


def test_a_run_of_sim_seconds_ends_with_its_simulated_time(broker: Mosquitto, tmp_path: Path) -> None:
    fleet = mixed(seed=33)
    published = Published()
    summary = run(SimRunner(fleet, broker.host, broker.port, faults=FaultConfig(), speed=36_000.0,
                            sim_seconds=3600.0, on_publish=published))
    end = fleet.start_ms + 3_600_000
    telemetry = [e for e in published.emissions if e.kind == "telemetry"]
    assert telemetry and max(e.send_ms for e in telemetry) < end + 60_000  # no step after the end (+ send delay)
    assert max(e.send_ms for e in telemetry) > end - 120_000  # the whole hour, not cut short
    assert summary.published == len(published.emissions) and seq_gaps(published.emissions) == {}
    exp = summary.expected_stored
    assert gateway_stored(fleet, published.emissions, tmp_path) == {"telemetry": exp.telemetry, "scan": exp.scan}
