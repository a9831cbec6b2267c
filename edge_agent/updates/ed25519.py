"""Ed25519 release signatures checked with the OpenSSL the agent already maps, not ``cryptography``.

The agent loads OpenSSL's ``libcrypto`` with Python's ``ssl`` module (paho and httpx import it),
and OpenSSL 1.1.1+ verifies Ed25519. Importing ``cryptography`` only to verify would add its Rust
extension: +6.7 MiB resident on the gateway, for the life of the process, after the first signed
release. :func:`verify` applies :func:`protocols.signing.verify`'s rule (same codes: ``unsigned``,
``unknown_key``, ``bad_signature``) with OpenSSL's ``EVP_DigestVerify``; where the process maps no
libcrypto with Ed25519, it calls :func:`protocols.signing.verify` itself.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import functools
from collections.abc import Iterable, Mapping

from pydantic import BaseModel

from protocols import Signature
from protocols.signing import SignatureError, canonical_bytes

#: OpenSSL's ``EVP_PKEY_ED25519`` (``NID_ED25519``).
_EVP_PKEY_ED25519 = 1087


class _Libcrypto:
    """The few libcrypto calls an Ed25519 verification needs, typed for ctypes."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        vp, sz, cp = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p
        self.new_key = lib.EVP_PKEY_new_raw_public_key
        self.new_key.restype, self.new_key.argtypes = vp, [ctypes.c_int, vp, cp, sz]
        self.free_key = lib.EVP_PKEY_free
        self.free_key.restype, self.free_key.argtypes = None, [vp]
        self.new_ctx = lib.EVP_MD_CTX_new
        self.new_ctx.restype, self.new_ctx.argtypes = vp, []
        self.free_ctx = lib.EVP_MD_CTX_free
        self.free_ctx.restype, self.free_ctx.argtypes = None, [vp]
        self.init = lib.EVP_DigestVerifyInit
        self.init.restype, self.init.argtypes = ctypes.c_int, [vp, vp, vp, vp, vp]
        self.digest_verify = lib.EVP_DigestVerify
        self.digest_verify.restype, self.digest_verify.argtypes = ctypes.c_int, [vp, cp, sz, cp, sz]
        self.clear_errors = lib.ERR_clear_error
        self.clear_errors.restype, self.clear_errors.argtypes = None, []

    def verify(self, public_raw: bytes, signature: bytes, message: bytes) -> bool:
        """True only when ``signature`` is ``public_raw``'s Ed25519 signature of ``message``."""
        if len(public_raw) != 32 or len(signature) != 64:
            return False
        key = self.new_key(_EVP_PKEY_ED25519, None, public_raw, len(public_raw))
        if not key:
            self.clear_errors()
            return False
        ctx = self.new_ctx()
        try:
            ok = (
                bool(ctx)
                and self.init(ctx, None, None, None, key) == 1
                and self.digest_verify(ctx, signature, len(signature), message, len(message)) == 1
            )
        finally:
            self.free_ctx(ctx)
            self.free_key(key)
        if not ok:
            self.clear_errors()  # OpenSSL's per-thread error queue: leave it empty
        return ok


@functools.cache
def libcrypto() -> _Libcrypto | None:
    """The libcrypto that Python's ``_ssl`` links (already mapped: no new resident memory); None
    where there is none, or it has no raw Ed25519 keys (OpenSSL before 1.1.1)."""
    try:
        import _ssl

        # dlsym on _ssl's handle also searches the libraries it links (libssl, libcrypto).
        lib = _Libcrypto(ctypes.CDLL(_ssl.__file__))
        probe = lib.verify(bytes(32), bytes(64), b"")  # must refuse, not crash or raise
    except (ImportError, OSError, AttributeError):
        return None
    return None if probe else lib


def verify(signed: BaseModel, signatures: Iterable[Signature], trusted: Mapping[str, bytes]) -> str:
    """:func:`protocols.signing.verify` (the key id of a valid signature by a ``trusted`` key), on libcrypto."""
    lib = libcrypto()
    if lib is None:
        from protocols.signing import verify as verify_with_cryptography

        return verify_with_cryptography(signed, signatures, trusted)
    sigs = list(signatures)
    if not sigs:
        raise SignatureError("unsigned", "the document carries no signature")
    message = canonical_bytes(signed)
    tried_trusted = False
    for sig in sigs:
        raw = trusted.get(sig.keyid)
        if raw is None:
            continue
        tried_trusted = True
        try:
            signature = base64.b64decode(sig.sig)
        except (binascii.Error, ValueError):
            continue
        if lib.verify(raw, signature, message):
            return sig.keyid
    if tried_trusted:
        raise SignatureError("bad_signature", "a trusted key's signature does not verify (document altered)")
    keyids = ", ".join(s.keyid[:12] for s in sigs)
    raise SignatureError("unknown_key", f"signed only by keys this gateway does not trust ({keyids})")
