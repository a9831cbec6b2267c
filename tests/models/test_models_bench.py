"""The benchmark scripts run end to end on tiny inputs and end with the agreed last line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


def test_nab_bench_last_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "data" / "cat").mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    start = date(2014, 4, 1)
    stamps = [
        f"{start + timedelta(minutes=5 * i // 1440)} {(5 * i % 1440) // 60:02d}:{5 * i % 60:02d}:00"
        for i in range(1200)
    ]
    values = 10 + np.sin(np.arange(1200) * 2 * np.pi / 288) + rng.normal(0, 0.1, 1200)
    values[900:910] += 8
    lines = ["timestamp,value"] + [f"{s},{v:.4f}" for s, v in zip(stamps, values, strict=True)]
    (tmp_path / "data" / "cat" / "x.csv").write_text("\n".join(lines) + "\n")
    window = [[f"{stamps[880]}.000000", f"{stamps[940]}.000000"]]
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps({"cat/x.csv": window}))
    last = _run("nab.py", "--data", str(tmp_path))
    assert re.fullmatch(
        r"nab: standard=-?[\d.]+ low_fp=-?[\d.]+ low_fn=-?[\d.]+ fixed_threshold_standard=-?[\d.]+ files=1",
        last,
    )


def test_demand_bench_last_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    skus = ["A_1", "B_2"]
    lines = ['"DATE",' + ",".join(f'"QTY_{s}"' for s in skus) + "," + ",".join(f'"PROMO_{s}"' for s in skus)]
    for i in range(150):
        day = date(2019, 1, 1) + timedelta(days=i)
        lines.append(f"{day},{rng.poisson(3)},{rng.poisson(12)},0,{int(i % 9 == 0)}")
    data = tmp_path / "panel.csv"
    data.write_text("\n".join(lines) + "\n")
    last = _run("demand.py", "--data", str(data))
    assert re.fullmatch(
        r"demand: rmsse_int8=[\d.]+ rmsse_float=[\d.]+ rmsse_ses=[\d.]+ rmsse_ma28=[\d.]+ "
        r"ratio_vs_best_baseline=[\d.]+",
        last,
    )


def test_demand_bench_refuses_a_model_trained_on_test_rows(tmp_path: Path) -> None:
    lines = ['"DATE","QTY_A_1","PROMO_A_1"'] + [
        f"{date(2018, 1, 1) + timedelta(days=i)},{i % 5},0" for i in range(200)
    ]  # ends 2018-07-19: origin B lies before the shipped model's last training day
    data = tmp_path / "panel.csv"
    data.write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "demand.py"), "--data", str(data)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode != 0
    assert "origin B" in result.stderr
