"""`edgehouse demo` (what `make demo` runs) completes with nothing lost, on both broker kinds."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("broker_flag", ["--embedded-broker", "--no-embedded-broker"])
def test_demo_runs_and_reconciles(tmp_path: Path, broker_flag: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edgehouse_cli.main", "demo", "--duration", "8", "--no-live", broker_flag,
         "--workdir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=240, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "OK: nothing lost, nothing stored twice" in proc.stdout
    assert "amqtt" in proc.stdout if broker_flag == "--embedded-broker" else "mosquitto" in proc.stdout
    # the pre-generated history made every SKU forecastable: forecasts reached the cloud at start
    flat = " ".join(proc.stdout.replace("│", " ").split())
    forecasts = re.search(r"alerts / demand forecasts\D*(\d+) / (\d+)", flat)  # the table wraps cells
    assert forecasts is not None and int(forecasts.group(2)) == 50, flat[-2000:]  # 20 + 30 SKUs
    # and the replenishment plan from the synced forecasts and stock was routed
    line = re.search(r"replenishment: orders=(\d+) routes=(\d+) distance_km=([\d.]+) unserved=(\d+)", proc.stdout)
    assert line is not None, proc.stdout[-3000:]
    orders, routes, km, unserved = int(line[1]), int(line[2]), float(line[3]), int(line[4])
    assert orders == 2 and routes >= 1 and km > 0 and unserved == 0
    assert (tmp_path / "demo" / "replenishment-routes.png").stat().st_size > 0


@pytest.mark.slow
def test_demo_retrains_and_rolls_out_a_model(tmp_path: Path) -> None:
    """The full demo: midway the cloud retrains the anomaly model and every gateway ends up running it."""
    proc = subprocess.run(
        [sys.executable, "-m", "edgehouse_cli.main", "demo", "--no-live", "--workdir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=900, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "OK: nothing lost, nothing stored twice" in proc.stdout
    flat = " ".join(proc.stdout.replace("│", " ").split())  # the summary table wraps its cells
    assert "runs on every gateway" in flat and "model lifecycle failed" not in flat
