"""Soak: the kill -9 / cloud outage / broker restart scenario at 100,000 messages (`make test-slow`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "faults.py"


@pytest.mark.slow
def test_faults_at_scale_lose_nothing() -> None:
    proc = subprocess.run([sys.executable, str(BENCH), "--count", "100000", "--kill-every", "2.0"],
                          capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"faults: kills=(\d+) sent=(\d+) in_cloud=(\d+) lost=(\d+) duplicates=(\d+)", last)
    assert m, last
    kills, sent, in_cloud, lost, dups = map(int, m.groups())
    assert kills >= 10
    assert sent > 50_000
    assert (lost, dups) == (0, 0)
    assert in_cloud == sent
