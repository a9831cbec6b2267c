"""Sync over a thin, metered link: wire bytes of JSON vs columnar batches, a day's backlog drained under a
256 kbit/s cap with an alert raised during the drain, and nothing lost or stored twice.

    python bench/sync_wire.py [--outage-hours 22] [--cap-kbps 256] [--capped-s 60]

The simulator's warehouse fleet (``_stack.bench_fleet``: every device kind, four of each; about 24,000
messages an hour, 93 % RFID/barcode scans) is generated offline and written into the agent's store through
the agent's own ingest path (``BatchWriter``: the tables and the outbox in one transaction each batch, as
MQTT ingest does), so that a day's backlog takes seconds to build. The agent's ``SyncWorker`` sends to a
real cloud process (SQLite) through a byte-counting TCP proxy: every byte the agent puts on the wire
(request lines, headers, bodies, retries) is counted there, with its time.

1. Wire bytes: the fleet's first hour, sent once as today's gzip-JSON batches (``cloud.encoding = "json"``,
   gateway gw-json) and once negotiated (columnar, gateway gw-wire; its first request is JSON, before the
   cloud's advertisement): upstream bytes / device messages of each, and ``ratio`` = new / today.
2. Outage: the cloud stops; ``--outage-hours`` more of the fleet accumulate in gw-wire's outbox
   (created at the times they would have arrived: a backlog, older than the live window), at least 500,000.
3. Drain under the cap (``cloud.max_bytes_per_s``): the cloud comes back; the worker drains (alerts and
   device status first, live data next, backlog oldest first) while the fleet keeps sending live data; 15 s
   in, an alert is raised through ``GatewayOutput.emit`` (store + outbox + wake the sync, as the scoring
   does). ``alert_latency_s``: from the raise to the cloud's ``stored_ts``. The cap is checked on the proxy's
   byte log: the most bytes in any 10 s window inside the capped phase, over 10 s of the cap.
4. The cap is lifted (the agent restarted without it) and the rest drains. ``lost``/``duplicates``: the
   cloud's stored ids of gw-wire against the simulator's ground truth (every published, non-repeat message).

Last line: ``sync_wire: bytes_per_reading=<x> baseline_bytes_per_reading=<x> ratio=<r> alert_latency_s=<x>
cap_kbps=<n> lost=<n> duplicates=<n>`` (a reading here is one device message: telemetry, scan or status).
"""

from __future__ import annotations

import argparse
import bisect
import socket
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import _stack

from edge_agent.cloud_client import cloud_client
from edge_agent.config import CloudConfig
from edge_agent.inbound import Inbound
from edge_agent.ingest_batch import BatchWriter
from edge_agent.metrics import AgentMetrics
from edge_agent.output import GatewayOutput
from edge_agent.store import Store
from edge_agent.store import outbox as ob
from edge_agent.sync import Outcome, SyncWorker
from edgehouse_cli.broker import free_port
from edgehouse_cli.stack import CloudProcess
from firmware_sim.emission import Emission
from firmware_sim.generator import SimStream
from protocols import AlertPayload, record_id

HOUR_MS = 3_600_000
RECORD_KIND = {"telemetry": "telemetry", "scan": "scan", "status": "device_status"}


class CountingProxy:
    """TCP proxy agent -> cloud; logs (time, bytes) of everything the agent sends."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.up: list[tuple[float, int]] = []
        self.up_total = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:  # the cloud is down: the agent sees its connection dropped
                client.close()
                continue
            upstream.settimeout(None)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, counted: bool) -> None:
        try:
            while data := src.recv(65536):
                if counted:
                    self.up.append((time.monotonic(), len(data)))
                    self.up_total += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._sock.close()


def worst_window(log: list[tuple[float, int]], start: float, end: float, window_s: float = 10.0) -> float:
    """Most bytes in any ``window_s`` window inside [start, end], per second."""
    times = [t for t, _ in log]
    lo, hi = bisect.bisect_left(times, start), bisect.bisect_right(times, end)
    events = log[lo:hi]
    sums = [0]
    for _, n in events:
        sums.append(sums[-1] + n)
    worst = 0
    j = 0
    for i, (t, _) in enumerate(events):
        if t + window_s > end:
            break
        while j < len(events) and events[j][0] < t + window_s:
            j += 1
        worst = max(worst, sums[j] - sums[i])
    return worst / window_s


def emissions(stream: SimStream, until_ms: int) -> Iterator[Emission]:
    """The stream's publishes up to ``until_ms`` (simulated time)."""
    while stream.now_ms < until_ms:
        try:
            e = next(stream)
        except StopIteration:
            return
        if e.publishes and e.kind is not None:
            yield e


def write(store: Store, writer: BatchWriter, items: list[Emission], truth: set[str], offset_ms: int) -> int:
    """Ingest emissions through the agent's batch writer (received at their time + ``offset_ms``)."""
    n = 0
    for start in range(0, len(items), 2000):
        chunk = items[start : start + 2000]
        inbound = [Inbound(e.topic, e.payload, i + 1, 1) for i, e in enumerate(chunk)]
        writer.write(inbound, chunk[0].send_ms + offset_ms)
        for e in chunk:
            if not (e.duplicate or e.malformed or e.burst_repeat):
                truth.add(record_id(RECORD_KIND[str(e.kind)], e.device_id, e.boot_id, e.seq))
                n += 1
    return n


def cloud_ids(db: Path, gateway_id: str) -> tuple[set[str], int]:
    """Device-record ids the cloud stored for a gateway, and how many rows hold them."""
    conn = sqlite3.connect(db)
    try:
        ids: set[str] = set()
        rows = 0
        for table in ("telemetry", "scans", "device_status"):
            found = [r[0] for r in conn.execute(f"SELECT id FROM {table} WHERE gateway_id = ?", (gateway_id,))]
            rows += len(found)
            ids.update(found)
        return ids, rows
    finally:
        conn.close()


def drain(worker: SyncWorker, conn: sqlite3.Connection, url: str, config: CloudConfig) -> None:
    with cloud_client(config) as client:
        while (result := worker.run_once(conn, client)).outcome is not Outcome.IDLE:
            if result.outcome is not Outcome.SENT:
                raise RuntimeError(f"sync to {url} failed: {result}")


def cloud_config(url: str, token: str, **over: object) -> CloudConfig:
    return CloudConfig.model_validate({"url": url, "token": token, "backoff_min_s": 0.2, "backoff_max_s": 2.0,
                                       "interval_s": 1.0, **over})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--outage-hours", type=float, default=22.0)
    ap.add_argument("--cap-kbps", type=int, default=256)
    ap.add_argument("--capped-s", type=float, default=60.0)
    ap.add_argument("--min-backlog", type=int, default=500_000)
    args = ap.parse_args()
    cap = args.cap_kbps * 1000 // 8
    fleet = _stack.bench_fleet(per_kind=4)
    site = fleet.site_of(fleet.gateway_ids[0])
    with tempfile.TemporaryDirectory(prefix="eh-bench-wire-") as tmp_s:
        tmp = Path(tmp_s)
        cloud = CloudProcess(workdir=tmp / "cloud", port=free_port())
        cloud.start()
        proxy = CountingProxy(cloud.port)
        url = f"http://127.0.0.1:{proxy.port}"
        tokens = {gw: cloud.register_gateway(gw, site) for gw in ("gw-json", "gw-wire")}
        stores = {gw: Store(tmp / f"{gw}.db") for gw in tokens}
        for store in stores.values():
            store.open()
        conns = {gw: stores[gw].connect() for gw in tokens}
        writers = {gw: BatchWriter(conns[gw], site, 2000, 4096) for gw in tokens}

        # 1. wire bytes of the first hour, JSON vs negotiated
        stream = SimStream(fleet)
        first = list(emissions(stream, fleet.start_ms + HOUR_MS))
        truth_json: set[str] = set()
        truth: set[str] = set()
        offset = int(time.time() * 1000) - (fleet.start_ms + int((1 + args.outage_hours) * HOUR_MS))
        n_first = write(stores["gw-json"], writers["gw-json"], first, truth_json, offset)
        write(stores["gw-wire"], writers["gw-wire"], first, truth, offset)
        figures = {}
        for gw, encoding in (("gw-json", "json"), ("gw-wire", "auto")):
            config = cloud_config(url, tokens[gw], encoding=encoding)
            before = proxy.up_total
            drain(SyncWorker(config, gw, stores[gw], AgentMetrics()), conns[gw], url, config)
            figures[gw] = (proxy.up_total - before) / n_first
            print(f"{gw}: {n_first:,} messages, {proxy.up_total - before:,} bytes up "
                  f"({figures[gw]:.2f} per message, {encoding})")
        baseline, compact = figures["gw-json"], figures["gw-wire"]

        # 2. outage: the backlog builds
        cloud.stop()
        outage_end = fleet.start_ms + int((1 + args.outage_hours) * HOUR_MS)
        started = time.monotonic()
        backlog = write(stores["gw-wire"], writers["gw-wire"], list(emissions(stream, outage_end)), truth, offset)
        depth = ob.depth(conns["gw-wire"])
        print(f"outage: {backlog:,} messages in {time.monotonic() - started:.1f}s; outbox {depth:,} records")
        if depth < args.min_backlog:
            raise SystemExit(f"backlog {depth} < {args.min_backlog}: raise --outage-hours")

        # 3. drain under the cap, live data flowing, an alert raised 15 s in
        cloud.start()
        config = cloud_config(url, tokens["gw-wire"], max_bytes_per_s=cap)
        metrics = AgentMetrics()
        worker = SyncWorker(config, "gw-wire", stores["gw-wire"], metrics)
        output = GatewayOutput(stores["gw-wire"], site, "gw-wire")
        output.wake_sync_with(worker.notify)
        stop_live = threading.Event()

        def live() -> None:  # the fleet at its own pace, received now (the live lane)
            conn = stores["gw-wire"].connect()
            writer = BatchWriter(conn, site, 2000, 4096)
            t0, sim0 = time.monotonic(), stream.now_ms
            while not stop_live.wait(0.5):
                due = sim0 + int((time.monotonic() - t0) * 1000)
                items = list(emissions(stream, due))
                if items:
                    write(stores["gw-wire"], writer, items, truth, int(time.time() * 1000) - items[0].send_ms)
            conn.close()

        feeder = threading.Thread(target=live, daemon=True)
        capped_start = time.monotonic()
        worker.start()
        feeder.start()
        time.sleep(15.0)
        raised_ms = int(time.time() * 1000)
        alert = AlertPayload(alert_id=f"bench-anomaly-{raised_ms}", gateway_id="gw-wire", kind="system",
                             state="raised", severity="critical", ts=raised_ms, code="bench_anomaly",
                             message="anomaly injected during the drain")
        output.emit(alert)
        stored_ts = None
        deadline = time.monotonic() + 60
        while stored_ts is None and time.monotonic() < deadline:
            time.sleep(0.05)
            db = sqlite3.connect(tmp / "cloud" / "cloud.db")
            row = db.execute("SELECT stored_ts FROM alerts WHERE alert_id = ?", (alert.alert_id,)).fetchone()
            db.close()
            stored_ts = None if row is None else int(row[0])
        latency = float("nan") if stored_ts is None else (stored_ts - raised_ms) / 1000.0
        print(f"alert raised during the drain: stored in the cloud after {latency:.2f}s")
        time.sleep(max(0.0, args.capped_s - (time.monotonic() - capped_start)))
        worker.stop(flush=False)
        capped_end = time.monotonic()
        up_capped = sum(n for t, n in proxy.up if capped_start <= t <= capped_end)
        worst = worst_window(proxy.up, capped_start, capped_end)
        print(f"capped drain: {metrics.value('synced_records_total'):,.0f} records in {capped_end - capped_start:.0f}s, "
              f"{up_capped / (capped_end - capped_start):,.0f} B/s up (cap {cap:,}); worst 10 s window "
              f"{worst:,.0f} B/s = {worst / cap:.3f} of the cap; encoding {worker.wire.encoding}")

        # 4. the cap lifted: the rest drains, then the fleet's live data stops and the last of it drains
        uncapped = cloud_config(url, tokens["gw-wire"])
        worker = SyncWorker(uncapped, "gw-wire", stores["gw-wire"], AgentMetrics())
        started = time.monotonic()
        drain(worker, conns["gw-wire"], url, uncapped)
        stop_live.set()
        feeder.join()
        drain(worker, conns["gw-wire"], url, uncapped)
        print(f"uncapped drain of the rest: {time.monotonic() - started:.0f}s")
        ids, rows = cloud_ids(tmp / "cloud" / "cloud.db", "gw-wire")
        lost = len(truth - ids)
        duplicates = (rows - len(ids)) + len(ids - truth)
        print(f"ground truth {len(truth):,} device messages; cloud holds {len(ids):,} ({rows:,} rows); "
              f"outbox left {ob.depth(conns['gw-wire'])}")
        for conn in conns.values():
            conn.close()
        proxy.close()
        cloud.stop()
    print(f"cap_worst_10s_window_ratio={worst / cap:.3f}")
    print(f"sync_wire: bytes_per_reading={compact:.2f} baseline_bytes_per_reading={baseline:.2f} "
          f"ratio={compact / baseline:.3f} alert_latency_s={latency:.2f} cap_kbps={args.cap_kbps} "
          f"lost={lost} duplicates={duplicates}")


if __name__ == "__main__":
    main()
