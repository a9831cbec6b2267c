"""The compact sync encoding on the cloud side (``protocols.columnar``): advertised and decompressed here, then
validated column by column and stored (``cloud.services.sync_columnar``) with the acceptance, errors and rows of
the same batch sent as JSON.

``Accept-Post`` on every answer of ``POST /api/v1/sync`` lists the media types the endpoint takes, and
``Accept-Encoding`` the content codings it decodes (RFC 7694): what an agent reads to switch from JSON.
"""

from __future__ import annotations

import importlib.util
from typing import Final

from cloud.services import sync as sync_service
from cloud.services.errors import BadRequest, PayloadTooLarge, UnsupportedEncoding
from protocols.columnar import CONTENT_TYPE

JSON_TYPE: Final = "application/json"
#: zstd is decoded where the ``zstandard`` package is installed; gzip always.
ZSTD_AVAILABLE: Final = importlib.util.find_spec("zstandard") is not None
CODINGS: Final = ("gzip", "zstd") if ZSTD_AVAILABLE else ("gzip",)
ADVERTISED: Final = {"Accept-Post": f"{JSON_TYPE}, {CONTENT_TYPE}", "Accept-Encoding": ", ".join(CODINGS)}


def is_columnar(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() == CONTENT_TYPE


def _unzstd(raw: bytes, limit: int) -> bytes:
    import zstandard  # optional dependency, checked by ZSTD_AVAILABLE

    try:
        reader = zstandard.ZstdDecompressor().stream_reader(raw)
        out = reader.read(limit + 1)
    except zstandard.ZstdError as exc:
        raise BadRequest(f"body is not valid zstd: {exc}", "body") from None
    if len(out) > limit:
        raise PayloadTooLarge(f"decompressed body exceeds {limit} bytes", "body")
    return out


def columnar_document(raw: bytes, content_encoding: str | None, max_decompressed_bytes: int) -> bytes:
    """A columnar body decompressed (``cloud.services.sync_columnar`` validates and stores it)."""
    encoding = (content_encoding or "").strip().lower()
    if encoding == "zstd":
        if not ZSTD_AVAILABLE:
            raise UnsupportedEncoding(f"Content-Encoding zstd is not supported here (use {CODINGS})",
                                      "content-encoding")
        document = _unzstd(raw, max_decompressed_bytes)
    else:
        document = sync_service.decode_body(raw, content_encoding, max_decompressed_bytes)
    return document
