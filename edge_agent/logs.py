"""The daemon's log lines: plain text on a terminal, journald-friendly under systemd.

When stderr is the journal's stream (systemd sets ``$JOURNAL_STREAM`` to its ``device:inode``),
each line carries the record's syslog priority as a ``<N>`` prefix, which journald turns into
the entry's priority (``journalctl -p warning`` works), and no timestamp of its own (journald
stamps every entry). A traceback's lines carry the same prefix, so they stay at the record's
priority. Elsewhere: ``time level logger: message``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Final, TextIO

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT: Final = "%(name)s: %(message)s"


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a logging level: 2 crit, 3 err, 4 warning, 6 info, 7 debug."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class JournalFormatter(logging.Formatter):
    """Every line of a record prefixed with its syslog priority (``<4>sync: …``)."""

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines() or [""])


def journal_attached(stream: TextIO, environ: dict[str, str] | None = None) -> bool:
    """True when ``stream`` is the journal's stream that ``$JOURNAL_STREAM`` names."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep or not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return st.st_dev == int(dev) and st.st_ino == int(ino)


def configure(level: str, stream: TextIO | None = None) -> logging.Handler:
    """Log records at ``level`` and above to ``stream`` (stderr), in the format that fits it."""
    out = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(out)
    handler.setFormatter(JournalFormatter() if journal_attached(out) else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    return handler
