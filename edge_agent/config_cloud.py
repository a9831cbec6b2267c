"""The ``[cloud]`` section: where the cloud is, how the sync worker talks to it, and how much of a thin,
metered link it may use (``max_bytes_per_s``, a ``cap_schedule`` of lower caps, bounded batch bytes).

Re-exported by :mod:`edge_agent.config`; kept apart so ``config.py`` stays under the module size limit.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

PositiveFloat = Annotated[float, Field(gt=0)]
#: Below this a cap cannot carry one request's headers in a second: refused at start-up.
MIN_BYTES_PER_S = 1000
_HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class CapWindow(_Section):
    """A time of day (UTC, ``start`` inclusive, ``end`` exclusive; ``end < start`` wraps past midnight)
    with its own cap, e.g. working hours on a link the site shares."""

    start: Annotated[str, Field(pattern=_HHMM)]
    end: Annotated[str, Field(pattern=_HHMM)]
    max_bytes_per_s: Annotated[int, Field(ge=MIN_BYTES_PER_S)]
    #: ISO weekdays (1 = Monday) the window applies on; empty: every day.
    days: tuple[Annotated[int, Field(ge=1, le=7)], ...] = ()

    @model_validator(mode="after")
    def _not_empty(self) -> CapWindow:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self

    def covers(self, when: dt.datetime) -> bool:
        """Whether the UTC time ``when`` falls inside this window."""
        minute = when.hour * 60 + when.minute
        start, end = (int(t[:2]) * 60 + int(t[3:]) for t in (self.start, self.end))
        inside = start <= minute < end if start < end else minute >= start or minute < end
        if not inside:
            return False
        if not self.days:
            return True
        day = when.isoweekday() if start < end or minute >= start else (when - dt.timedelta(days=1)).isoweekday()
        return day in self.days


class CloudConfig(_Section):
    #: Base URL of the cloud API; without it the outbox only accumulates (sync disabled).
    url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")] | None = None
    token: SecretStr | None = None
    batch_max_records: Annotated[int, Field(ge=1, le=5000)] = 1000
    #: Records per batch in the columnar encoding (smaller per record, and better compressed when larger).
    columnar_batch_max_records: Annotated[int, Field(ge=1, le=5000)] = 5000
    #: Upper bound of one request body as sent (compressed); a batch is cut to stay under it.
    batch_max_bytes: Annotated[int, Field(ge=4096, le=8 * 1024 * 1024)] = 512 * 1024
    interval_s: PositiveFloat = 5.0
    connect_timeout_s: PositiveFloat = 5.0
    request_timeout_s: PositiveFloat = 30.0
    backoff_min_s: PositiveFloat = 1.0
    backoff_max_s: PositiveFloat = 300.0
    #: Pause after a 401/403: the token needs fixing, retrying fast only floods the logs.
    auth_backoff_s: PositiveFloat = 600.0
    #: Time allowed for one last sync round during a graceful stop.
    shutdown_flush_s: Annotated[float, Field(ge=0)] = 3.0
    ca_file: Path | None = None
    #: Upload cap in bytes per second on everything the sync sends (headers, bodies, retries); None: none.
    max_bytes_per_s: Annotated[int, Field(ge=MIN_BYTES_PER_S)] | None = None
    #: Lower (or higher) caps at times of day; the first window that covers now wins over max_bytes_per_s.
    cap_schedule: tuple[CapWindow, ...] = ()
    #: Under a cap, one batch carries about this many seconds of the cap (an alert waits at most ~that).
    cap_batch_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    #: Records younger than this are live data: sent before the backlog (after alerts and device status).
    live_window_s: PositiveFloat = 300.0
    #: ``auto``: the compact columnar encoding when the cloud advertises it, JSON otherwise; ``json``: always JSON.
    encoding: Literal["auto", "json"] = "auto"

    @model_validator(mode="after")
    def _check(self) -> CloudConfig:
        if self.url is not None and self.token is None:
            raise ValueError("url needs token")
        if self.backoff_max_s < self.backoff_min_s:
            raise ValueError("backoff_max_s must be >= backoff_min_s")
        return self

    @property
    def enabled(self) -> bool:
        return self.url is not None

    def cap_at(self, when: dt.datetime) -> int | None:
        """The upload cap (bytes/s) in force at the UTC time ``when``; None: unlimited."""
        for window in self.cap_schedule:
            if window.covers(when):
                return window.max_bytes_per_s
        return self.max_bytes_per_s
