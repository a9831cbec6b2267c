"""The sync's upload cap: a token bucket on the bytes actually sent (request lines, headers, bodies, retries).

The cap in force comes from ``cloud.max_bytes_per_s`` and its ``cap_schedule`` (read at each take, so a
window that opens takes effect at once). The bucket holds at most ``burst_s`` of the cap, so any window of
``T`` seconds carries at most ``cap × (T + burst_s)`` bytes: with the default quarter second, 2.5 % over
the cap in a 10 s window. Bodies are fed to the socket in chunks no larger than the bucket, each taken
before it is written, so a large batch is paced instead of sent in one burst.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator

from edge_agent.config_cloud import CloudConfig

#: Largest piece of a body written at once (smaller under a low cap: never more than the bucket holds).
MAX_CHUNK = 16 * 1024
_MIN_CHUNK = 256


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ByteBucket:
    """Token bucket in bytes; ``take(n)`` blocks until ``n`` bytes may go out (at once when uncapped)."""

    def __init__(
        self,
        config: CloudConfig,
        burst_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        wall: Callable[[], dt.datetime] = utc_now,
        on_sent: Callable[[int], None] = lambda n: None,
    ) -> None:
        self._config = config
        self._burst_s = burst_s
        self._clock = clock
        self._sleep = sleep
        self._wall = wall
        self._on_sent = on_sent
        self._lock = threading.Lock()
        self._at = clock()
        self._tokens: float | None = None  # full at the first take
        self.sent_bytes = 0
        self.waited_s = 0.0

    def cap(self) -> int | None:
        """The cap in force now (bytes/s), None when unlimited."""
        return self._config.cap_at(self._wall())

    def capacity(self, cap: int) -> float:
        return max(float(_MIN_CHUNK), cap * self._burst_s)

    def chunk_size(self) -> int:
        cap = self.cap()
        return MAX_CHUNK if cap is None else int(max(_MIN_CHUNK, min(MAX_CHUNK, self.capacity(cap))))

    def take(self, n: int) -> None:
        """Wait until ``n`` bytes fit under the cap, then count them as sent."""
        with self._lock:
            while True:
                cap = self.cap()
                now = self._clock()
                if cap is None:
                    self._at, self._tokens = now, None
                    break
                capacity = self.capacity(cap)
                tokens = capacity if self._tokens is None else self._tokens
                tokens = min(capacity, tokens + (now - self._at) * cap)
                self._at, self._tokens = now, tokens
                need = min(float(n), capacity)  # a piece larger than the bucket leaves it in debt
                if tokens >= need - 0.01:  # float slack: a wait of (need - tokens) / cap may fall short by ulps
                    self._tokens = tokens - n
                    break
                delay = (need - tokens) / cap
                self.waited_s += delay
                self._sleep(delay)
            self.sent_bytes += n
        self._on_sent(n)

    def paced(self, body: bytes) -> Iterator[bytes]:
        """``body`` in chunks, each taken from the bucket before it is handed to the socket."""
        view = memoryview(body)
        size = self.chunk_size()
        for start in range(0, len(body), size):
            piece = view[start : start + size]
            self.take(len(piece))
            yield bytes(piece)
