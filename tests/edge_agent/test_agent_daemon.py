"""edge_agent.daemon, the agent as a real process: its lean start-up path (what it imports, the
memory bounds behind the ingest bench's RSS figure), the CLI, SIGKILL mid-stream without loss or
duplicates, SIGTERM exits 0, untrusted input logged bounded."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from agent_testkit import SITE, telemetry, write_toml
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent import runtime
from edge_agent.config import AgentConfig
from edge_agent.daemon import limit_malloc_arenas
from protocols import device_topic, encode, gateway_topic
from tests.helpers.mosquitto import Mosquitto
from tests.helpers.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]


def agent_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge_agent", *args]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("EDGEHOUSE_AGENT_")}


def start_agent(config_path: Path, cfg: AgentConfig, log: Path) -> subprocess.Popen[bytes]:
    if cfg.runtime_path.exists():
        cfg.runtime_path.unlink()
    proc = subprocess.Popen(
        agent_cmd("run", "--config", str(config_path)),
        cwd=REPO,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if cfg.runtime_path.exists() and runtime.read(cfg.runtime_path).pid == proc.pid:
            return proc
        if proc.poll() is not None:
            raise AssertionError(f"agent exited {proc.returncode}: {log.read_text()[-3000:]}")
        time.sleep(0.05)
    raise AssertionError("agent did not start")


def count(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(str(db), timeout=5)
    try:
        total = conn.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0]
        distinct = conn.execute("SELECT COUNT(DISTINCT seq) FROM telemetry").fetchone()[0]
        return int(total), int(distinct)
    except sqlite3.OperationalError:
        return 0, 0
    finally:
        conn.close()


def test_validate_config(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('gateway_id = "gw"\nsite = "s"\ndata_dir = "d"\n')
    out = subprocess.run(  # noqa: PLW1510 (return codes are asserted)
        agent_cmd("run", "--config", str(good), "--validate-config"),
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout.strip() == "OK"
    assert not (tmp_path / "d").exists()  # nothing started
    bad = tmp_path / "bad.toml"
    bad.write_text('gateway_id = "gw"\nsite = "s"\ndata_dir = "d"\n[ingest]\nbatch_maxx = 3\n')
    out = subprocess.run(  # noqa: PLW1510 (return codes are asserted)
        agent_cmd("run", "--config", str(bad), "--validate-config"),
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "ingest.batch_maxx" in out.stderr


def test_sigkill_mid_stream_then_restart_stores_everything_once(
    make_config: Any, broker: Mosquitto, tmp_path: Path
) -> None:
    cfg = make_config(mqtt={"port": broker.port, "reconnect_min_s": 0.05, "reconnect_max_s": 0.5})
    config_path = write_toml(tmp_path / "agent.toml", cfg)
    log = tmp_path / "agent.log"
    total = 4000
    first = start_agent(config_path, cfg, log)
    time.sleep(0.5)  # connected and subscribed

    pub = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="pub", protocol=paho.MQTTv5)
    pub.max_inflight_messages_set(200)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    topic = device_topic(SITE, "dev-1", "telemetry")

    def stream() -> None:
        for i in range(total):
            pub.publish(topic, encode(telemetry(i)), qos=1)
            if i % 200 == 0:
                time.sleep(0.02)

    sender = threading.Thread(target=stream)
    sender.start()
    try:
        assert wait_for(lambda: count(cfg.db_path)[0] >= 800, 20)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert count(cfg.db_path)[0] < total  # really killed mid-stream
        sender.join(60)
        second = start_agent(config_path, cfg, log)
        try:
            assert wait_for(lambda: count(cfg.db_path)[0] >= total, 30), count(cfg.db_path)
            time.sleep(0.5)
            assert count(cfg.db_path) == (total, total)
            conn = sqlite3.connect(str(cfg.db_path))
            assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == total
            conn.close()
            status = subprocess.run(  # noqa: PLW1510 (return codes are asserted)
                agent_cmd("status", "--config", str(config_path)),
                cwd=REPO,
                env=clean_env(),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert status.returncode == 0 and "messages_in" in status.stdout, status.stderr
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0, log.read_text()[-3000:]
    finally:
        pub.loop_stop()
        pub.disconnect()
    assert not cfg.runtime_path.exists()


def test_untrusted_input_is_logged_bounded(make_config: Any, broker: Mosquitto, tmp_path: Path) -> None:
    """60 KB of garbage on the command topic and on a device topic: the log says so in bounded lines."""
    cfg = make_config(mqtt={"port": broker.port})
    config_path = write_toml(tmp_path / "agent.toml", cfg)
    log = tmp_path / "agent.log"
    proc = start_agent(config_path, cfg, log)
    pub = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id="garbage", protocol=paho.MQTTv5
    )
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    try:
        time.sleep(0.5)  # connected and subscribed
        garbage = b"{" + b"\x7f" * 30_000 + "é".encode() * 15_000
        pub.publish(gateway_topic(SITE, cfg.gateway_id, "cmd"), garbage, qos=1).wait_for_publish(10)
        pub.publish(device_topic(SITE, "dev-1", "telemetry"), garbage, qos=1).wait_for_publish(10)
        assert wait_for(lambda: "malformed command" in log.read_text(errors="replace"), 20), log.read_text()[
            -2000:
        ]
    finally:
        pub.loop_stop()
        pub.disconnect()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    lines = log.read_text(errors="replace").splitlines()
    assert max(len(line) for line in lines) < 2_500, max(lines, key=len)[:300]
    assert any("malformed command on" in line and "(60001 bytes)" in line for line in lines)


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
                  "tensorflow", "cryptography", "sqlite_utils"}}
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


_SIGTERM_ON_ANOTHER_THREAD = textwrap.dedent("""
    import signal, threading, time
    from edge_agent.daemon import install_stop_signals, wait_for_stop

    stop = threading.Event()
    install_stop_signals(stop)

    def worker():
        time.sleep(0.3)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)  # the kernel may pick any thread
        time.sleep(60)

    threading.Thread(target=worker, daemon=True).start()
    wait_for_stop(stop)
    print("stopped")
""")


def test_sigterm_handed_to_another_thread_still_stops_the_agent() -> None:
    # A process-directed signal goes to any thread; its Python handler runs only in the main thread,
    # between bytecodes, so a stop.wait() without a timeout never woke up and the agent ignored SIGTERM.
    done = subprocess.run([sys.executable, "-c", _SIGTERM_ON_ANOTHER_THREAD], capture_output=True, text=True,
                          timeout=20, check=False, cwd=REPO)
    assert done.stdout.strip() == "stopped", done.stdout + done.stderr
