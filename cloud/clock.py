"""The cloud's one clock: wall time in integer milliseconds since the epoch (UTC).

Every service, repository and background loop reads time here (or is handed ``now_ms`` by its
caller), so a test or a replay can fix it in one place. Job leases use the database server's clock
instead (``cloud.jobs.queue.db_now_ms``) because replicas on several hosts must agree on it.
"""

from __future__ import annotations

import time


def now_ms() -> int:
    """Milliseconds since the Unix epoch, now."""
    return int(time.time() * 1000)
