"""Reading a NAB-layout directory: windows map to the first row with that timestamp."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.nab_data import read_corpus


def _layout(root: Path, windows: dict[str, list[list[str]]]) -> None:
    (root / "data" / "cat").mkdir(parents=True)
    (root / "labels").mkdir()
    rows = ["timestamp,value"]
    stamps = [f"2014-04-01 00:{m:02d}:00" for m in range(0, 50, 5)]
    stamps.insert(4, stamps[3])  # a repeated timestamp, as in ec2_request_latency_system_failure
    rows += [f"{s},{i}.5" for i, s in enumerate(stamps)]
    (root / "data" / "cat" / "a.csv").write_text("\n".join(rows))  # no trailing newline, like nyc_taxi
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))


def test_windows_use_first_occurrence(tmp_path: Path) -> None:
    _layout(tmp_path, {"cat/a.csv": [["2014-04-01 00:15:00.000000", "2014-04-01 00:25:00.000000"]]})
    (series,) = read_corpus(tmp_path)
    assert series.name == "cat/a.csv"
    assert series.values.shape == (11,)
    assert series.windows == ((3, 6),)
    assert series.values[0] == 0.5


def test_unknown_window_timestamp_is_an_error(tmp_path: Path) -> None:
    _layout(tmp_path, {"cat/a.csv": [["2014-04-01 00:16:00.000000", "2014-04-01 00:25:00.000000"]]})
    with pytest.raises(ValueError, match="does not match"):
        read_corpus(tmp_path)
