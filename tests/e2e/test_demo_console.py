"""`edgehouse demo --keep` ends by printing the console's URL and log-in tokens and keeps the cloud up until
Ctrl-C; the tokens log in to the console. Without a terminal (and without --keep) nothing waits."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from edgehouse_cli.demo_console import wants_keep


def test_keep_follows_the_flag_else_the_terminal() -> None:
    assert wants_keep(True, live=False) and not wants_keep(False, live=True)
    assert not wants_keep(None, live=False)
    assert wants_keep(None, live=True) is (sys.stdin.isatty() and sys.stdout.isatty())


_SIGINT_ON_ANOTHER_THREAD = """
import signal, threading, time
from edgehouse_cli.demo_console import _until_interrupted

def helper():
    time.sleep(0.3)
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # the kernel may pick any thread
    time.sleep(60)

threading.Thread(target=helper, daemon=True).start()
try:
    _until_interrupted()
except KeyboardInterrupt:
    print("interrupted")
"""


def test_the_wait_ends_when_ctrl_c_lands_on_another_thread() -> None:
    # A process-directed SIGINT goes to any thread; Python raises KeyboardInterrupt only in the main
    # thread, between bytecodes, so a wait without a timeout never woke up (a demo that ignored Ctrl-C).
    done = subprocess.run([sys.executable, "-c", _SIGINT_ON_ANOTHER_THREAD], capture_output=True, text=True,
                          timeout=20, check=False)
    assert done.stdout.strip() == "interrupted", done.stdout + done.stderr


def _read_until(proc: subprocess.Popen[str], marker: str, timeout_s: float) -> str:
    out: list[str] = []
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        out.append(line)
        if marker in line:
            return "".join(out)
    raise AssertionError(f"no {marker!r} in the demo's output:\n{''.join(out)[-3000:]}")


@pytest.mark.timeout(300)
def test_demo_keep_prints_the_console_and_waits_for_ctrl_c(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgehouse_cli.main", "demo", "--duration", "4", "--no-live", "--no-lifecycle",
         "--keep", "--workdir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        out = _read_until(proc, "press Ctrl-C", 240)
        assert "demo summary" in out, out[-3000:]  # the console comes after the summary
        url = re.search(r"console: (http://\S+)/console", out)
        assert url is not None, out[-2000:]
        tokens = dict(re.findall(r"^\s+(admin|operator|planner)\s+(\S+)$", out, re.MULTILINE))
        assert set(tokens) == {"admin", "operator", "planner"}, out[-2000:]
        with httpx.Client(base_url=url.group(1), timeout=10) as c:
            login = c.post("/console/login", data={"token": tokens["operator"], "next": "/console/fleet"})
            assert login.status_code == 303 and login.headers["location"] == "/console/fleet"
            fleet = c.get("/console/fleet")
            assert fleet.status_code == 200 and "gw-" in fleet.text
        assert proc.poll() is None  # still up, waiting for Ctrl-C
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        # Ctrl-C ends the wait, not the run: the exit code is still the summary's verdict
        assert proc.returncode == (0 if "OK: nothing lost" in out else 1), rest[-3000:]
        assert "stopping" in rest
        with pytest.raises(httpx.HTTPError):
            httpx.get(url.group(1) + "/healthz", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
