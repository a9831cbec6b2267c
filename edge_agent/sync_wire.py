"""What one sync request looks like on the wire: the encoding the cloud takes, batches bounded in bytes,
bodies paced through the upload cap, and the bytes each request costs.

JSON (``protocols.SyncBatch``, gzip) is what every cloud takes. A cloud that lists the columnar encoding
(``protocols.columnar``) in the ``Accept-Post`` header of its sync answers gets that instead, with zstd
where both ends have it (``Accept-Encoding`` of the answer), gzip otherwise. The choice follows the last
answer: a 200 without the advertisement (an older cloud put back) switches to JSON again, and so does a
refusal of a columnar batch that does not advertise it (the batch is then resent as JSON, never bisected).
"""

from __future__ import annotations

import gzip
import importlib.util
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import httpx

from edge_agent.bandwidth import ByteBucket
from edge_agent.config_cloud import CloudConfig
from edge_agent.store.outbox import OutboxRow
from protocols import SyncBatchHeader
from protocols.columnar import CONTENT_TYPE as COLUMNAR_TYPE
from protocols.columnar import encode as encode_columnar

JSON_TYPE: Final = "application/json"
GZIP_LEVEL: Final = 5
#: Columnar documents are small and sent on thin links: worth the best gzip level.
COLUMNAR_GZIP_LEVEL: Final = 9
ZSTD_LEVEL: Final = 12
ZSTD_AVAILABLE: Final = importlib.util.find_spec("zstandard") is not None
#: Until a batch has been measured: wire bytes per record of each encoding (a first guess, then learnt).
_FIRST_GUESS: Final = {"json": 80.0, "columnar": 40.0}
_EWMA: Final = 0.3


@dataclass(frozen=True, slots=True)
class WireBatch:
    rows: list[OutboxRow]
    encoding: str  # "json" | "columnar"
    content_type: str
    content_encoding: str
    body: bytes


def _zstd(data: bytes) -> bytes:
    import zstandard  # optional: ZSTD_AVAILABLE

    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)


def head_bytes(request: httpx.Request) -> int:
    """Bytes of the request line and headers as HTTP/1.1 writes them."""
    line = len(request.method) + len(request.url.raw_path) + len(b"  HTTP/1.1\r\n")
    return line + sum(len(k) + len(v) + 4 for k, v in request.headers.raw) + 2


def response_bytes(response: httpx.Response) -> int:
    """Bytes of an answer as received (status line, headers, body as sent)."""
    head = len(b"HTTP/1.1 000 \r\n") + len(response.reason_phrase) + 2
    head += sum(len(k) + len(v) + 4 for k, v in response.headers.raw)
    length = response.headers.get("content-length")
    return head + (int(length) if length is not None and length.isdigit() else len(response.content))


class Wire:
    """Per worker: the negotiated encoding, the learnt bytes per record and the upload cap."""

    def __init__(self, config: CloudConfig, bucket: ByteBucket) -> None:
        self._config = config
        self.bucket = bucket
        self.columnar = False
        self.zstd = False
        #: A cloud that advertised the columnar encoding and then refused it (415) gets JSON from now on.
        self._columnar_refused = False
        self._per_record = dict(_FIRST_GUESS)
        #: Bytes per second of the last requests (send to answer), for drain estimates when uncapped.
        self.measured_rate: float | None = None

    @property
    def encoding(self) -> str:
        usable = self.columnar and not self._columnar_refused and self._config.encoding == "auto"
        return "columnar" if usable else "json"

    def bytes_per_record(self) -> float:
        """Learnt wire bytes per record of the encoding in use (drain-time estimates)."""
        return self._per_record[self.encoding]

    def record_limit(self) -> int:
        """Records per batch at most: columnar batches are small per record and compress better when larger."""
        if self.encoding == "columnar":
            return self._config.columnar_batch_max_records
        return self._config.batch_max_records

    def byte_budget(self) -> int:
        """Body bytes one batch may take: ``batch_max_bytes``, and under a cap ``cap_batch_s`` of it."""
        cap = self.bucket.cap()
        if cap is None:
            return self._config.batch_max_bytes
        return max(1024, min(self._config.batch_max_bytes, int(cap * self._config.cap_batch_s)))

    def records_for(self, budget: int, limit: int) -> int:
        """How many records a batch of ``budget`` bytes should hold (learnt bytes per record)."""
        return max(1, min(limit, int(budget / self.bytes_per_record())))

    def build(self, header: SyncBatchHeader, rows: list[OutboxRow]) -> WireBatch:
        """The request body of these rows (as many of the oldest as fit in the byte budget)."""
        budget = self.byte_budget()
        while True:
            batch = self._encode(header, rows)
            if len(batch.body) <= budget or len(rows) == 1:
                self._learn(batch)
                return batch
            keep = max(1, min(len(rows) - 1, int(len(rows) * budget / len(batch.body) * 0.9)))
            rows = rows[:keep]

    def _encode(self, header: SyncBatchHeader, rows: list[OutboxRow]) -> WireBatch:
        payloads: Iterable[str] = (r.payload for r in rows)
        if self.encoding == "json":
            body = gzip.compress(header.batch_json(payloads).encode(), compresslevel=GZIP_LEVEL)
            return WireBatch(rows, "json", JSON_TYPE, "gzip", body)
        document = encode_columnar(header, payloads)
        if self.zstd:
            return WireBatch(rows, "columnar", COLUMNAR_TYPE, "zstd", _zstd(document))
        body = gzip.compress(document, compresslevel=COLUMNAR_GZIP_LEVEL)
        return WireBatch(rows, "columnar", COLUMNAR_TYPE, "gzip", body)

    def _learn(self, batch: WireBatch) -> None:
        per = len(batch.body) / len(batch.rows)
        old = self._per_record[batch.encoding]
        self._per_record[batch.encoding] = old + _EWMA * (per - old)

    def headers(self, batch: WireBatch) -> dict[str, str]:
        return {
            "Content-Type": batch.content_type,
            "Content-Encoding": batch.content_encoding,
            "Content-Length": str(len(batch.body)),
        }

    def send(self, client: httpx.Client, path: str, batch: WireBatch) -> httpx.Response:
        """POST the batch through the cap: the head is taken first, then the body chunk by chunk."""
        request = client.build_request("POST", path, content=self.bucket.paced(batch.body),
                                       headers=self.headers(batch))
        sent = head_bytes(request) + len(batch.body)
        started = time.monotonic()
        self.bucket.take(head_bytes(request))
        response = client.send(request)
        rate = sent / max(1e-3, time.monotonic() - started)
        self.measured_rate = rate if self.measured_rate is None else self.measured_rate + _EWMA * (
            rate - self.measured_rate)
        return response

    def expected_drain_s(self, depth: int) -> float | None:
        """Seconds to send ``depth`` records at the cap (or the measured rate when uncapped)."""
        cap = self.bucket.cap()
        rate = float(cap) if cap is not None else self.measured_rate
        if not depth:
            return 0.0
        return None if not rate else depth * self.bytes_per_record() / rate

    def observe(self, batch: WireBatch, response: httpx.Response) -> bool:
        """Follow the cloud's advertisement; True when a refusal was of the encoding (resend as JSON)."""
        accepts = _tokens(response.headers.get("accept-post"))
        advertised = COLUMNAR_TYPE in accepts
        if response.status_code == 200 or advertised:
            self.columnar = advertised
            self.zstd = ZSTD_AVAILABLE and "zstd" in _tokens(response.headers.get("accept-encoding"))
        if batch.encoding != "columnar" or not 400 <= response.status_code < 500:
            return False
        if response.status_code == 415:
            if batch.content_encoding == "zstd":
                self.zstd = False
            else:
                self._columnar_refused = True
            return True
        if not advertised and response.status_code not in (401, 403, 429):
            self.columnar = False
            return True
        return False


def _tokens(value: Any) -> set[str]:
    if not isinstance(value, str):
        return set()
    return {part.split(";", 1)[0].strip().lower() for part in value.split(",") if part.strip()}
