"""bench/scorer.py: this checkout against a git revision, alternately, on a NAB-layout folder."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _corpus(root: Path, n: int = 600) -> None:
    (root / "data" / "synthetic").mkdir(parents=True)
    (root / "labels").mkdir()
    t0 = datetime(2026, 3, 2, tzinfo=UTC)
    lines = ["timestamp,value"]
    for i in range(n):
        ts = (t0 + timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{ts},{20 + 3 * math.sin(i / 288 * 2 * math.pi) + (9 if i == 500 else 0):.3f}")
    (root / "data" / "synthetic" / "sine.csv").write_text("\n".join(lines) + "\n")
    (root / "labels" / "combined_windows.json").write_text(json.dumps({"synthetic/sine.csv": []}))


def _worktrees() -> str:
    return subprocess.run(["git", "-C", str(REPO), "worktree", "list"], check=True, capture_output=True, text=True).stdout


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / "scorer.py"), *args],
        check=False, capture_output=True, text=True, timeout=300, cwd=REPO,
    )


def test_compares_this_checkout_with_a_revision_and_cleans_up(tmp_path: Path) -> None:
    _corpus(tmp_path)
    before = _worktrees()
    out = _bench("--rounds", "1", "--baseline", "HEAD", "--data", str(tmp_path), "--memory-streams", "1")
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    m = re.fullmatch(
        r"scorer: us_per_reading=([\d.]+) readings_per_s=(\d+) baseline=HEAD baseline_us_per_reading=([\d.]+) "
        r"ratio=([\d.]+) rounds=1 state_kib_per_stream=([\d.]+) baseline_state_kib_per_stream=([\d.]+)",
        lines[-1],
    )
    assert m is not None, lines[-1]
    assert float(m[1]) > 0 and float(m[3]) > 0 and int(m[2]) > 0
    assert float(m[5]) > 10 and float(m[6]) > 10  # at least the history a stream keeps
    assert lines[-2].startswith("scorer state per stream (1 1-minute streams")
    assert lines[-3].startswith("600 readings per run")
    assert _worktrees() == before  # the baseline's worktree is gone


def test_an_unknown_revision_is_a_clear_error(tmp_path: Path) -> None:
    _corpus(tmp_path)
    out = _bench("--rounds", "1", "--baseline", "no-such-revision-0", "--data", str(tmp_path))
    assert out.returncode != 0
    assert "--baseline 'no-such-revision-0'" in out.stderr
