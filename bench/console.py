"""First paint of every console page against real volumes, in headless Chromium (Debian's ``/usr/bin/chromium``).

Fixture, put into a real cloud (uvicorn on a loopback port, SQLite by default) through its API: 1,000
gateways over 20 sites, each with a model report (outbox depth, agent version, 1 in 25 with a rejected
update) and 10 raised alerts (10,000 alarms over the last 7 days; 4 in 10 cleared by a later clear
record), one device with a week of telemetry every 30 s (20,160 messages of 2 metrics), forecasts and picks
for the Demand page, and a route job of 1,000 orders (``bench/vrp_large.py``'s city problem, 50 vehicles)
solved by the embedded worker.

For each page: ``first_paint_ms`` is the browser's first-contentful-paint after navigation (server time
included); ``ready_ms`` is when the page's data is drawn (the chart, the map and timeline, fetched after
the first paint). Median of ``--runs`` navigations after one warm-up.

    PYTHONPATH=$PWD .venv/bin/python bench/console.py [--gateways 1000] [--alerts-per-gateway 10]
        [--orders 1000] [--runs 3] [--database-url postgresql+psycopg://...]

Last line: ``console: <page>_ms=<first paint> ... max_first_paint_ms=<n>``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "cloud"))
sys.path.insert(0, str(ROOT / "tests" / "console"))
sys.path.insert(0, str(ROOT / "bench"))
from cloud_testkit import ADMIN_TOKEN, make_settings
from live_cloud import LiveCloud
from playwright.sync_api import Page, sync_playwright
from seed import (
    alert_record,
    forecast_record,
    model_report,
    scan_record,
    sync_batch,
    telemetry_record,
)
from vrp_large import city_problem

from cloud.auth import CONSOLE_COOKIE
from cloud.console.chart_pages import MAX_POINTS

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CHROMIUM = "/usr/bin/chromium"
MIN = 60_000
DAY = 86_400_000


def seed(url: str, gateways: int, alerts_per_gateway: int, orders: int) -> dict[str, Any]:
    now = int(time.time() * 1000)
    t0 = time.perf_counter()
    with httpx.Client(base_url=url, headers=ADMIN, timeout=120) as c:
        tokens: dict[str, str] = {}
        for i in range(gateways):
            gw, site = f"gw-{i:04d}", f"site-{i % 20:02d}"
            resp = c.post("/api/v1/gateways", json={"gateway_id": gw, "site": site})
            resp.raise_for_status()
            tokens[gw] = resp.json()["token"]
        for i, (gw, token) in enumerate(tokens.items()):
            records = []
            for k in range(alerts_per_gateway):
                ts = now - (i * alerts_per_gateway + k) * (7 * DAY // (gateways * alerts_per_gateway))
                alert_id = f"anomaly:cold-{i}-{k % 3}:temperature_c:{k}"
                records.append(alert_record(gw, alert_id, "raised", ts, f"cold-{i}-{k % 3}",
                                            severity=("critical", "warning", "info")[k % 3]))
                if k % 3 == 0:
                    records.append(alert_record(gw, alert_id.replace(f":{k}", f":{k}c"), "cleared", ts + 5 * MIN,
                                                f"cold-{i}-{k % 3}"))
            sync_batch(c, gw, token, records, 1)
            model_report(c, gw, token, now - (i % 7) * 60_000, rejected=i % 25 == 0, depth=(i * 37) % 5000)
        print(f"seeded {gateways} gateways and their alerts in {time.perf_counter() - t0:.0f} s", flush=True)
        gw0, token0 = "gw-0000", tokens["gw-0000"]
        start = now - 7 * DAY
        readings = [telemetry_record("stream-1", n, start + n * 30_000, 4 + (n % 2880) / 1000) for n in range(20_160)]
        for n in range(0, len(readings), 1000):
            sync_batch(c, gw0, token0, readings[n:n + 1000], 100 + n)
        sync_batch(c, gw0, token0, [alert_record(gw0, f"anomaly:stream-1:temperature_c:s{k}", "raised",
                                                 now - k * DAY // 2, "stream-1") for k in range(1, 12)], 99)
        today = dt.datetime.fromtimestamp(now / 1000, dt.UTC).date()
        scans = [scan_record("reader-1", d * 10 + k, now - d * DAY - k * MIN, "SKU-1", 2 + (d + k) % 3)
                 for d in range(1, 60) for k in range(10)]
        sync_batch(c, gw0, token0, scans, 98)
        sync_batch(c, gw0, token0, [forecast_record(gw0, "site-00", "SKU-1", today - dt.timedelta(days=d),
                                                    now - d * DAY, d) for d in range(0, 56, 7)], 97)
        print(f"seeded streams and demand after {time.perf_counter() - t0:.0f} s", flush=True)
        problem = city_problem(orders, max(10, orders // 20), 1).model_dump(mode="json")
        job = c.post("/api/v1/route-jobs", params={"time_limit_s": 20}, json=problem)
        job.raise_for_status()
        job_id = job.json()["id"]
        deadline = time.monotonic() + 300
        while c.get(f"/api/v1/route-jobs/{job_id}").json()["status"] != "done":
            if time.monotonic() > deadline:
                raise SystemExit("the route job did not finish")
            time.sleep(1)
        print(f"solved the {orders}-order route job after {time.perf_counter() - t0:.0f} s", flush=True)
    return {"job_id": job_id, "gateway": gw0}


_PAINT = """() => { const e = performance.getEntriesByName('first-contentful-paint')[0];
  return e ? e.startTime : null; }"""


def measure(page: Page, url: str, ready: Callable[[Page], None] | None) -> tuple[float, float]:
    t0 = time.perf_counter()
    resp = page.goto(url, wait_until="commit")
    if resp is None or resp.status != 200:
        raise SystemExit(f"{url}: {None if resp is None else resp.status}")
    page.wait_for_function("() => performance.getEntriesByName('first-contentful-paint').length > 0")
    paint = float(page.evaluate(_PAINT))
    if ready is not None:
        ready(page)
    page.wait_for_load_state("load")
    return paint, (time.perf_counter() - t0) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gateways", type=int, default=1000)
    ap.add_argument("--alerts-per-gateway", type=int, default=10)
    ap.add_argument("--orders", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--database-url", default=None, help="default: SQLite in a temporary directory")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'cloud.db'}"
        settings = make_settings(url, rollout_tick_s=3600, train_workdir=Path(tmp) / "train")
        with LiveCloud(settings) as cloud:
            fx = seed(cloud.url, args.gateways, args.alerts_per_gateway, args.orders)
            job, gw = fx["job_id"], fx["gateway"]

            def chart(page: Page) -> None:
                page.wait_for_selector("#stream-chart svg, #demand-chart svg", state="attached")

            def plan(page: Page) -> None:
                page.wait_for_selector("#timeline svg", state="attached")
                page.wait_for_function("() => document.getElementById('route-map').dataset.drawn === '1'")

            now = int(time.time() * 1000)
            stream = f"/console/streams?device_id=stream-1&metric=temperature_c&from={now - 7 * DAY}&to={now}"
            pages: list[tuple[str, str, Callable[[Page], None] | None]] = [
                ("fleet", "/console/fleet", None),
                ("fleet_filtered", "/console/fleet?site=site-03&status=online&sort=outbox_depth&desc=true", None),
                ("gateway", f"/console/gateways/{gw}", None),
                ("alerts", "/console/alerts", None),
                ("alerts_filtered", "/console/alerts?site=site-07&severity=critical&state=active&ack=unacked",
                 None),
                ("alarm", f"/console/alarms/{gw}/alert:anomaly:cold-0-0:temperature_c:0", None),
                ("streams", stream, chart),
                ("demand", "/console/demand?site=site-00&sku=SKU-1", chart),
                ("routes", "/console/routes", None),
                ("route_plan", f"/console/routes/{job}", plan),
                ("models", "/console/models", None),
            ]
            figures: dict[str, tuple[float, float]] = {}
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                            args=["--no-sandbox", "--disable-gpu"])
                context = browser.new_context(viewport={"width": 1440, "height": 900})
                context.add_cookies([{"name": CONSOLE_COOKIE, "value": ADMIN_TOKEN, "url": cloud.url}])
                page = context.new_page()
                for name, path, ready in pages:
                    measure(page, cloud.url + path, ready)  # warm-up
                    runs = [measure(page, cloud.url + path, ready) for _ in range(args.runs)]
                    figures[name] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
                    print(f"{name:16s} first_paint_ms={figures[name][0]:7.0f}  ready_ms={figures[name][1]:7.0f}",
                          flush=True)
                browser.close()
    db = "postgresql" if url.startswith("postgresql") else "sqlite"
    print(f"console: db={db} gateways={args.gateways} alarms={args.gateways * args.alerts_per_gateway} "
          f"orders={args.orders} max_points={MAX_POINTS} "
          + " ".join(f"{k}_ms={v[0]:.0f}" for k, v in figures.items())
          + f" max_first_paint_ms={max(v[0] for v in figures.values()):.0f}"
          + f" max_ready_ms={max(v[1] for v in figures.values()):.0f}")


if __name__ == "__main__":
    main()
