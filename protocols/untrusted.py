"""How much of untrusted input may be repeated: in logs, error reasons and dead letters.

A payload, a header or a topic comes from whoever can reach the broker or the API. Repeating
it whole lets one message write megabytes of log. :func:`clip` bounds one value;
:class:`BoundedLogRecords` bounds every log record of a handler (message and traceback), so no
code path can forget it. Both the agent and the cloud install the filter on their log handlers.
"""

from __future__ import annotations

import logging
import traceback
from typing import Final

#: Characters of one untrusted value repeated in a log line or an error reason.
MAX_VALUE_CHARS: Final = 200
#: Characters of one log message, whatever it holds.
MAX_LOG_MESSAGE_CHARS: Final = 2_000
#: Characters of a traceback attached to a log record.
MAX_TRACEBACK_CHARS: Final = 8_000


def clip(value: object, limit: int = MAX_VALUE_CHARS) -> str:
    """``str(value)`` cut to ``limit`` characters, saying how much was cut."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[{len(text) - limit} more chars]"


class BoundedLogRecords(logging.Filter):
    """A handler filter that bounds each record's message and traceback (it never drops a record)."""

    def __init__(self, max_message_chars: int = MAX_LOG_MESSAGE_CHARS,
                 max_traceback_chars: int = MAX_TRACEBACK_CHARS) -> None:
        super().__init__()
        self._max_message = max_message_chars
        self._max_traceback = max_traceback_chars

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the record
            message = f"{record.msg!r} % {record.args!r}"
        if len(message) > self._max_message:
            record.msg, record.args = clip(message, self._max_message), None
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = clip(text, self._max_traceback)
        elif record.exc_text and len(record.exc_text) > self._max_traceback:
            record.exc_text = clip(record.exc_text, self._max_traceback)
        return True


def bound_log_handlers(logger: logging.Logger | None = None) -> None:
    """Install :class:`BoundedLogRecords` on every handler of ``logger`` (the root logger by default)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, BoundedLogRecords) for f in handler.filters):
            handler.addFilter(BoundedLogRecords())
