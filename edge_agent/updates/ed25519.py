"""Ed25519 release signatures checked with the OpenSSL the agent already maps, not ``cryptography``.

The agent loads OpenSSL's ``libcrypto`` with Python's ``ssl`` module (paho and httpx import it),
and OpenSSL 1.1.1+ verifies Ed25519. Importing ``cryptography`` only to verify would add its Rust
extension: +6.7 MiB resident on the gateway, for the life of the process, after the first signed
release or key rotation. :func:`verifier` is the raw check that :func:`protocols.signing.verify` (the one
rule: codes ``unsigned``, ``unknown_key``, ``bad_signature``) and ``check_rotation`` take: OpenSSL's
``EVP_DigestVerify``, or ``cryptography``'s where the process maps no libcrypto with Ed25519.
"""

from __future__ import annotations

import ctypes
import functools

from protocols.signing import RawVerifier, cryptography_verifier

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


def verifier() -> RawVerifier:
    """The raw Ed25519 check for :func:`protocols.signing.verify` / ``check_rotation``: libcrypto's where the
    process maps one with Ed25519, else ``cryptography``'s (:func:`protocols.signing.cryptography_verifier`)."""
    lib = libcrypto()
    return cryptography_verifier if lib is None else lib.verify
