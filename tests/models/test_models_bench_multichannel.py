"""bench/multichannel.py on a folder of CSV runs, and the device report of bench/sim_detection.py."""

from __future__ import annotations

import csv
import math
import random
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _write_run(path: Path, seed: int, fault_at: int, n: int = 700) -> None:
    rng = random.Random(seed)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "flow", "current", "pressure", "note", "anomaly"])
        for i in range(n):
            speed = 0.8 + 0.05 * math.sin(i / 80.0)
            current = 12 * speed**3 + rng.gauss(0, 0.05)
            bad = i >= fault_at
            if bad:
                current *= 2.0
            flow = "" if i == 450 else f"{50 * speed + rng.gauss(0, 0.3):.3f}"  # a gap: the last value is kept
            w.writerow([f"2026-03-02T00:{i // 60 % 60:02d}:{i % 60:02d}", flow, f"{current:.3f}",
                        f"{1 + 2.5 * speed**2 + rng.gauss(0, 0.01):.4f}", "text", int(bad)])


def test_csv_runs_give_per_row_f1_far_mar_and_the_per_channel_baseline(tmp_path: Path) -> None:
    for seed in (1, 2):
        _write_run(tmp_path / f"run{seed}.csv", seed, fault_at=600)
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "multichannel.py"), "--data", str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    m = re.fullmatch(r"multichannel: files=(\d+) f1=([\d.]+) far_pct=([\d.]+) mar_pct=([\d.]+)", lines[-1])
    assert m is not None, lines[-1]
    assert int(m[1]) == 2 and float(m[2]) > 0.8 and float(m[3]) < 5.0 and float(m[4]) < 20.0
    assert any(line.startswith("per-channel baseline: f1=") for line in lines)


def test_sim_detection_reports_the_pumps_faults_of_the_joint_score() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "sim_detection.py"), "--days", "0.5"],
        check=False, capture_output=True, text=True, timeout=180, cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(r"device_detection: devices=\d+ \([^)]*pump 2[^)]*\) anomalies=\d+ detected=\d+ "
                     r".*false_alerts_per_device_day=",
                     out.stdout.replace("\n", " ")), out.stdout[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-1].startswith("sim_detection: ")  # stream or device alerts
    assert any(line.startswith("sim_detection_streams: anomalies=") for line in lines)  # stream alerts alone
