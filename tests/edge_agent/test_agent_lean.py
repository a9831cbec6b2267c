"""The daemon's lean start-up path and the memory bounds behind the ingest bench's RSS figure."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from agent_testkit import SITE, inbound, telemetry

from edge_agent.daemon import limit_malloc_arenas
from edge_agent.ingest_batch import BatchWriter
from edge_agent.priority import lower_thread_priority
from edge_agent.store import Store, outbox
from edge_agent.store.db import PADDED_LENGTHS, padded

REPO = Path(__file__).resolve().parents[2]


def _python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510 (the return code is asserted)
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )


def test_running_agent_with_models_off_loads_no_cli_stack_numpy_or_litert(tmp_path: Path) -> None:
    """What `edgehouse-agent run` imports and starts, with both models switched off."""
    out = _python(
        f"""
        import sys, threading
        from edge_agent.daemon import block_httpx_cli
        block_httpx_cli()
        from edge_agent.app import Agent
        from edge_agent.config import AgentConfig
        cfg = AgentConfig.from_mapping({{
            "gateway_id": "gw-lean", "site": "s", "data_dir": {str(tmp_path / "data")!r},
            "mqtt": {{"port": 1}}, "http": {{"port": 0}},
            "models": {{"enabled": False, "forecast_enabled": False}},
        }})
        agent = Agent(cfg)
        agent.start()
        agent.stop()
        import httpx  # the sync worker's client still works without its CLI module
        assert httpx.Client
        heavy = {{"typer", "click", "rich", "pygments", "numpy", "ai_edge_litert", "tflite_runtime",
                  "tensorflow", "cryptography"}}
        print(sorted(heavy & {{m.split(".")[0] for m in sys.modules}}))
        """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_models_on_load_numpy_and_the_interpreter_with_the_first_model(tmp_path: Path) -> None:
    out = _python(
        f"""
        import sys
        from edge_agent.app import Agent
        from edge_agent.config import AgentConfig
        cfg = AgentConfig.from_mapping({{
            "gateway_id": "gw-lean", "site": "s", "data_dir": {str(tmp_path / "data")!r},
            "mqtt": {{"port": 1}}, "http": {{"port": 0}},
        }})
        agent = Agent(cfg)
        before = "numpy" in sys.modules
        agent.start()
        loaded = agent.inference.running_model() is not None
        agent.stop()
        print(before, loaded, "numpy" in sys.modules)
        """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False True True"


def test_run_help_and_status_help(tmp_path: Path) -> None:
    for args in (["run", "--help"], ["status", "--help"], ["--help"]):
        out = subprocess.run(  # noqa: PLW1510
            [sys.executable, "-m", "edge_agent", *args], cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, (args, out.stderr)
        assert "--config" in out.stdout or "run" in out.stdout


def test_run_without_config_is_a_usage_error() -> None:
    out = subprocess.run(  # noqa: PLW1510
        [sys.executable, "-m", "edge_agent", "run"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2 and "--config" in out.stderr


def test_malloc_arena_cap_applies_on_glibc_unless_the_operator_set_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas() is True
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False


def test_padded_repeats_the_last_item_up_to_the_next_length() -> None:
    assert padded([]) == []
    assert padded([1]) == [1] * PADDED_LENGTHS[0]
    items = list(range(PADDED_LENGTHS[0] + 1))
    out = padded(items)
    assert len(out) == PADDED_LENGTHS[1] and out[: len(items)] == items
    assert set(out[len(items) :]) == {items[-1]}
    assert len(padded(list(range(PADDED_LENGTHS[-1])))) == PADDED_LENGTHS[-1]
    with pytest.raises(ValueError, match="chunk"):
        padded(list(range(PADDED_LENGTHS[-1] + 1)))


def test_outbox_delete_counts_each_id_once_whatever_the_padding(tmp_path: Path) -> None:
    store = Store(tmp_path / "agent.db")
    store.open()
    conn = store.connect()
    try:
        ids = [f"r{i}" for i in range(1203)]
        conn.executemany(
            "INSERT INTO outbox (id, kind, created_ts, payload) VALUES (?, 'reading', 1, '{}')",
            [(i,) for i in ids],
        )
        assert outbox.delete(conn, ids[:3] + ["missing"]) == 3
        assert outbox.delete(conn, ids[3:]) == 1200
        assert outbox.depth(conn) == 0
        # The cache holds one statement per padded length, not one per batch size.
        for n in range(1, 40):
            outbox.delete(conn, [f"x{i}" for i in range(n)])
    finally:
        conn.close()


def test_ingest_dedup_is_exact_at_every_padded_length(tmp_path: Path) -> None:
    """Batches of every size around the padded lengths: duplicates found, nothing else dropped."""
    store = Store(tmp_path / "agent.db")
    store.open()
    w = BatchWriter(store.connect(), SITE, 2000, 16)
    w.load_state()
    stored = 0
    seq = 0
    for size in (1, 15, 16, 17, 127, 128, 129, 250):
        fresh = [inbound(telemetry(seq + i)) for i in range(size)]
        seq += size
        again = fresh[: max(1, size // 3)]  # a third are re-deliveries of this same batch
        result = w.write(fresh + again, 1)
        assert result.stored["telemetry"] == size and result.duplicates == len(again)
        stored += size
        assert w.write(again, 2).duplicates == len(again)  # and of an earlier, committed one
    conn = store.connect()
    try:
        assert conn.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0] == stored
    finally:
        conn.close()


def test_background_threads_run_at_a_lower_priority_than_ingest() -> None:
    seen: dict[str, int] = {}

    def worker() -> None:
        assert lower_thread_priority(7) is True
        seen["worker"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["worker"] == min(19, base + 7)
    # Only that thread: the caller's priority is unchanged.
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base
    assert lower_thread_priority(0) is False
