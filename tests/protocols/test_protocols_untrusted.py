"""protocols.untrusted: one value and every log record repeat untrusted input only in bounded form."""

from __future__ import annotations

import logging

import pytest

from protocols.untrusted import MAX_LOG_MESSAGE_CHARS, BoundedLogRecords, bound_log_handlers, clip


def test_clip_says_how_much_was_cut() -> None:
    assert clip("abc", 5) == "abc"
    assert clip("x" * 12, 5) == "xxxxx…[7 more chars]"
    assert clip(12345678, 3) == "123…[5 more chars]"


def test_every_record_of_a_bounded_handler_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.untrusted")
    caplog.handler.addFilter(BoundedLogRecords())
    with caplog.at_level(logging.INFO, logger="test.untrusted"):
        logger.warning("payload %s", "A" * 61_190)
        try:
            raise ValueError("B" * 50_000)
        except ValueError:
            logger.exception("failed on %r", "C" * 10)
    long, exc = caplog.records
    assert len(long.getMessage()) <= MAX_LOG_MESSAGE_CHARS + 40 and "more chars]" in long.getMessage()
    assert exc.exc_text is not None and len(exc.exc_text) <= 8_100 and "ValueError" in exc.exc_text
    assert len(caplog.text) < 12_000


def test_bound_log_handlers_installs_once() -> None:
    logger = logging.getLogger("test.untrusted.install")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    try:
        bound_log_handlers(logger)
        bound_log_handlers(logger)
        assert sum(isinstance(f, BoundedLogRecords) for f in handler.filters) == 1
    finally:
        logger.removeHandler(handler)
