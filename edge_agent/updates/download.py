"""Resumable, ranged artifact download into ``{staging}/{sha256}.part``.

The part file survives restarts: the next attempt asks for ``Range: bytes={have}-`` and appends.
Network errors, 5xx and 429 are retried with backoff and jitter, at most ``retries`` failures in
a row without progress (then ``download_failed``). Before staging, the free space must cover the
missing bytes plus ``min_free_bytes`` (else ``disk_full``); ENOSPC while writing is ``disk_full``
too (the part file is removed: a half file on a full disk helps nobody). A server that sends more
bytes than signed, or a complete answer with fewer, is ``length_mismatch``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import threading
from pathlib import Path

import httpx

from edge_agent.backoff import Backoff
from edge_agent.updates.verify import Rejected
from protocols import ArtifactRef

log = logging.getLogger(__name__)

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_RETRY_STATUS = frozenset({408, 425, 429})
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


class DownloadStopped(Exception):
    """The agent is stopping; the part file is kept for the next attempt."""


class _Retry(Exception):
    """A transient failure worth another attempt."""


class Downloader:
    def __init__(
        self,
        client: httpx.Client,
        staging: Path,
        *,
        chunk_bytes: int,
        retries: int,
        min_free_bytes: int,
        backoff: Backoff,
        stop: threading.Event,
    ) -> None:
        self._client = client
        self.staging = staging
        self._chunk = chunk_bytes
        self._retries = retries
        self._min_free = min_free_bytes
        self._backoff = backoff
        self._stop = stop

    def part_path(self, ref: ArtifactRef) -> Path:
        return self.staging / f"{ref.sha256}.part"

    def fetch(self, url_path: str, ref: ArtifactRef) -> Path:
        """Download (or finish downloading) ``url_path``; the staged file holds exactly ``ref.length`` bytes.

        Raises :class:`~edge_agent.updates.verify.Rejected` (download_failed, disk_full,
        length_mismatch) or :class:`DownloadStopped`. The caller checks the sha256.
        """
        self.staging.mkdir(parents=True, exist_ok=True)
        part = self.part_path(ref)
        failures = 0
        self._backoff.reset()
        while True:
            have = part.stat().st_size if part.exists() else 0
            if have > ref.length:
                part.unlink()
                have = 0
            if have == ref.length:
                return part
            self._check_space(ref.length - have)
            try:
                written = self._attempt(url_path, part, have, ref)
            except (httpx.TransportError, _Retry) as exc:
                written = _written_since(part, have)
                failures = 0 if written else failures + 1
                log.warning(
                    "artifact %s…: attempt failed at %d/%d bytes (%s)",
                    ref.sha256[:12],
                    have + written,
                    ref.length,
                    exc or type(exc).__name__,
                )
                if failures > self._retries:
                    raise Rejected(
                        "download_failed", f"{url_path}: {exc or type(exc).__name__} ({failures} attempts)"
                    ) from None
                if self._stop.wait(self._backoff.next_delay()):
                    raise DownloadStopped from None
                continue
            if written:
                self._backoff.reset()
                failures = 0

    def _check_space(self, missing: int) -> None:
        free = shutil.disk_usage(self.staging).free
        if free < missing + self._min_free:
            raise Rejected(
                "disk_full",
                f"{free} bytes free in {self.staging}, staging needs {missing} + {self._min_free} (updates.min_free_bytes)",
            )

    def _attempt(self, url_path: str, part: Path, have: int, ref: ArtifactRef) -> int:
        """One GET; the bytes appended to ``part``."""
        headers = {"Range": f"bytes={have}-"} if have else {}
        with self._client.stream("GET", url_path, headers=headers) as resp:
            status = resp.status_code
            if status >= 500 or status in _RETRY_STATUS:
                raise _Retry(f"HTTP {status}")
            if status == 416:
                part.unlink(missing_ok=True)
                raise Rejected(
                    "length_mismatch", f"the server has fewer than the {have} bytes already staged"
                )
            if status == 206:
                offset = self._range_start(resp, ref, part, have)
            elif status == 200:
                offset = 0
            else:
                raise Rejected("download_failed", f"{url_path}: HTTP {status}")
            written = self._write(resp, part, offset, ref)
        end = offset + written
        if end < ref.length and status == 200:
            part.unlink(missing_ok=True)
            raise Rejected("length_mismatch", f"the artifact ended after {end} of {ref.length} signed bytes")
        return max(0, end - have)

    def _range_start(self, resp: httpx.Response, ref: ArtifactRef, part: Path, have: int) -> int:
        m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        if m is None:
            raise _Retry("206 without a valid Content-Range")
        start, total = int(m.group(1)), m.group(3)
        if total != "*" and int(total) != ref.length:
            part.unlink(missing_ok=True)
            raise Rejected(
                "length_mismatch", f"the server's artifact has {total} bytes, the release signs {ref.length}"
            )
        if start != have:
            part.unlink(missing_ok=True)
            raise _Retry(f"asked for bytes {have}-, got {start}-: starting over")
        return start

    def _write(self, resp: httpx.Response, part: Path, offset: int, ref: ArtifactRef) -> int:
        written = 0
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT, 0o644)
            with os.fdopen(fd, "wb") as f:
                if os.fstat(fd).st_size != offset:
                    f.truncate(offset)
                f.seek(offset)
                try:
                    for chunk in resp.iter_bytes(self._chunk):
                        if offset + written + len(chunk) > ref.length:
                            raise Rejected(
                                "length_mismatch", f"the server sent more than the {ref.length} signed bytes"
                            )
                        f.write(chunk)
                        written += len(chunk)
                        if self._stop.is_set():
                            raise DownloadStopped
                    f.flush()
                    os.fsync(fd)
                except BaseException:
                    with contextlib.suppress(OSError):
                        f.flush()  # keep what arrived: the next attempt resumes after it
                    raise
        except Rejected:
            part.unlink(missing_ok=True)
            raise
        except OSError as exc:
            if exc.errno in _NO_SPACE:
                part.unlink(missing_ok=True)
                raise Rejected("disk_full", f"no space left while staging the artifact: {exc}") from None
            raise
        return written


def _written_since(part: Path, have: int) -> int:
    try:
        return max(0, part.stat().st_size - have)
    except FileNotFoundError:
        return 0
