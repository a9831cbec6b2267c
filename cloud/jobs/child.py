"""The subprocess of a running job: its own session, stdout lines read on a thread, a stdin lifeline.

The child gets the request on its first stdin line and stdin stays open while it runs (see
cloud.lifeline): if this worker dies, the child exits too. :meth:`Child.terminate` sends SIGTERM to
the child's process group and SIGKILL after a grace period, so everything the job started stops.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Final

#: Seconds a terminated child gets to exit after SIGTERM before its group is killed.
TERMINATE_GRACE_S: Final = 3.0
#: Characters of stderr kept for the error message of a failed child.
STDERR_TAIL_CHARS: Final = 2000


class Child:
    def __init__(self, argv: Sequence[str], request_line: str | None = None, env: Mapping[str, str] | None = None,
                 merge_stderr: bool = False) -> None:
        self._stderr = None if merge_stderr else tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else self._stderr, text=True, start_new_session=True,
            env=None if env is None else dict(env),
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._eof = False
        self.tail: deque[str] = deque(maxlen=20)
        assert self.process.stdin is not None
        try:
            if request_line is not None:
                self.process.stdin.write(request_line.replace("\n", " ") + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it died at once; its exit status says why
        self._reader = threading.Thread(target=self._read, name=f"child-{self.process.pid}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        try:
            for line in self.process.stdout:
                self._lines.put(line)
        except (OSError, ValueError):
            pass
        finally:
            self._lines.put(None)

    def lines(self, timeout_s: float) -> Iterator[str]:
        """The lines that arrive within ``timeout_s`` (fewer when the output ends)."""
        deadline = time.monotonic() + timeout_s
        while not self._eof:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            if line is None:
                self._eof = True
                return
            self.tail.append(line.rstrip()[:500])
            yield line

    @property
    def output_ended(self) -> bool:
        return self._eof

    def wait(self, timeout_s: float | None = None) -> int:
        return self.process.wait(timeout=timeout_s)

    def terminate(self, grace_s: float = TERMINATE_GRACE_S) -> None:
        """SIGTERM the child's process group, SIGKILL it after ``grace_s``; waits for the child."""
        if self.process.poll() is not None:
            return
        _signal_group(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stderr_tail(self) -> str:
        if self._stderr is None:
            return " | ".join(self.tail)
        self._stderr.seek(0)
        return self._stderr.read()[-STDERR_TAIL_CHARS:]

    def close(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        if self._stderr is not None:
            self._stderr.close()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
