"""The agent as a systemd service: the shipped unit passes ``systemd-analyze verify`` and its
offline security check, holds the settings the agent relies on, and the daemon speaks the
service manager's side (``Type=notify`` READY/STOPPING, journald priority prefixes, SIGTERM → 0,
``data_dir`` from the state directory)."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

from agent_testkit import free_port

from edge_agent.daemon import CONFIG_ERROR_EXIT
from edge_agent.logs import JournalFormatter, journal_attached, syslog_priority
from edge_agent.service import SYSUSERS_NAME, UNIT_NAME, shipped_sysusers, shipped_unit
from edge_agent.service.notify import notify
from tests.helpers.waiting import patience, wait_for

REPO = Path(__file__).resolve().parents[2]
#: Bench peak RSS with both models (edge_agent/README.md "Measured"), MiB.
PEAK_RSS_MIB = 89


def unit_settings(text: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: install systemd (.ci/run does: apt-get install systemd)"
    return tool


def installed_unit(tmp_path: Path) -> Path:
    """The shipped unit as a gateway installs it, ExecStart pointing at this Python's agent."""
    text = shipped_unit().replace(
        "/opt/edgehouse/bin/edgehouse-agent run", f"{sys.executable} -m edge_agent run"
    )
    assert sys.executable in text
    path = tmp_path / UNIT_NAME
    path.write_text(text)
    return path


def test_the_shipped_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    out = subprocess.run(  # noqa: PLW1510 (the return code is asserted)
        [systemd_analyze(), "verify", str(installed_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # verify exits 0 on unknown keys or bad values too (it ignores them): no output at all is the bar.
    assert out.returncode == 0 and out.stdout + out.stderr == "", out.stdout + out.stderr


def test_the_shipped_unit_is_hardened_by_systemds_own_measure(tmp_path: Path) -> None:
    out = subprocess.run(  # noqa: PLW1510 (the return code is asserted)
        [systemd_analyze(), "security", "--offline=yes", "--threshold=20", str(installed_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # --threshold is on the 0-100 scale: 20 = an overall exposure of 2.0 (systemd calls <= 4.9 "OK").
    level = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", out.stdout)
    assert out.returncode == 0 and level, out.stdout[-2000:] + out.stderr
    assert float(level.group(1)) <= 2.0 and level.group(2) == "OK"


def test_the_unit_holds_what_the_agent_relies_on() -> None:
    unit = unit_settings(shipped_unit())
    service = {k: v[-1] for k, v in unit["Service"].items()}
    assert service["Type"] == "notify" and service["Restart"] == "always"
    assert service["RestartPreventExitStatus"] == str(CONFIG_ERROR_EXIT)  # a bad config is not retried
    assert service["User"] not in ("", "root") and service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"  # only the state directory is writable
    state = service["StateDirectory"]
    assert f"EDGEHOUSE_AGENT_DATA_DIR=%S/{state}" in unit["Service"]["Environment"]
    assert service["KillSignal"] == "SIGTERM" and int(service["TimeoutStopSec"]) >= 60
    memory_max = int(service["MemoryMax"].rstrip("M"))
    assert PEAK_RSS_MIB * 2 <= memory_max <= 512
    assert "~@resources" not in " ".join(unit["Service"]["SystemCallFilter"])  # threads renice themselves
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    user = shipped_sysusers().splitlines()[-1].split()
    assert user[:2] == ["u", service["User"]] and f"/var/lib/{state}" in user
    packaged = {p.name for p in (REPO / "edge_agent" / "service").iterdir()}
    assert {UNIT_NAME, SYSUSERS_NAME} <= packaged


def test_journal_lines_carry_the_syslog_priority_on_every_line(tmp_path: Path) -> None:
    assert [syslog_priority(x) for x in (10, 20, 30, 40, 50)] == [7, 6, 4, 3, 2]
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "edge_agent.sync", logging.ERROR, __file__, 1, "sync failed", (), sys.exc_info()
        )
    lines = JournalFormatter().format(record).splitlines()
    assert lines[0] == "<3>edge_agent.sync: sync failed" and len(lines) > 2
    assert all(line.startswith("<3>") for line in lines)
    log = tmp_path / "stderr.log"
    with log.open("w") as stream:
        st = os.fstat(stream.fileno())
        assert journal_attached(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not journal_attached(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not journal_attached(stream, {})
    assert notify("READY=1", environ={}) is False  # not under systemd: nothing sent


def test_the_daemon_under_a_service_manager_notifies_logs_for_journald_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        'gateway_id = "gw-svc"\nsite = "s"\ndata_dir = "not-used"\nlog_level = "INFO"\n'
        f"[mqtt]\nport = {free_port()}\n[http]\nport = 0\n"
        "[models]\nenabled = false\nforecast_enabled = false\n"
    )
    state = tmp_path / "state"
    address = f"@edgehouse-test-{uuid.uuid4().hex}"
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind("\0" + address[1:])
    manager.settimeout(patience(20))
    log = tmp_path / "journal.log"
    with log.open("wb") as stderr:
        st = os.fstat(stderr.fileno())
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEHOUSE_AGENT_")}
        env |= {
            "NOTIFY_SOCKET": address,
            "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}",
            "EDGEHOUSE_AGENT_DATA_DIR": str(state),  # what the unit sets: %S/edgehouse-agent
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        ready = manager.recv(4096).decode().splitlines()
        assert "READY=1" in ready and f"MAINPID={proc.pid}" in ready
        assert (state / "agent.db").is_file() and not (tmp_path / "not-used").exists()
        proc.send_signal(signal.SIGTERM)
        assert "STOPPING=1" in manager.recv(4096).decode().splitlines()
        assert proc.wait(patience(30)) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        manager.close()
    lines = log.read_text().splitlines()
    assert any(line.startswith("<6>edge_agent.app: agent gw-svc started") for line in lines), lines
    assert any(line.startswith("<4>") and "sync disabled" in line for line in lines), lines
    assert all(re.match(r"<[2-7]>", line) for line in lines), lines  # no line at the default priority
    assert wait_for(lambda: not (state / "agent.runtime.json").exists(), 5)


def test_a_bad_config_exits_with_the_status_the_unit_does_not_restart(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('gateway_id = "gw"\nsite = "s"\ndata_dir = "d"\n[mqtt]\nprot = 1\n')
    out = subprocess.run(  # noqa: PLW1510 (the return code is asserted)
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == CONFIG_ERROR_EXIT and "mqtt.prot" in out.stderr
