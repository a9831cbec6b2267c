"""Ed25519 signatures over canonical JSON, for release documents and key rotations.

The bytes signed are :func:`canonical_bytes` of the document's ``signed`` part: its JSON with
keys sorted, no insignificant whitespace, UTF-8. A key id is the sha256 (hex) of the raw
32-byte public key. Private keys are PKCS#8 PEM files (``edgehouse models keygen``); public keys
travel as base64 of the raw 32 bytes.

``cryptography`` is imported when a function here runs, not when ``protocols`` is imported.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from pydantic import BaseModel

from protocols.model_update import (
    KeyRotation,
    ModelRelease,
    PublicKey,
    Signature,
    SignedKeyRotation,
    SignedRelease,
)


class SignatureError(ValueError):
    """A document is not signed by a trusted key. ``code``: unsigned | unknown_key | bad_signature."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def canonical_bytes(signed: BaseModel) -> bytes:
    data = signed.model_dump(mode="json", by_alias=True)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def keyid_of(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()


def decode_public_key(text: str) -> bytes:
    """Raw 32 bytes from ``base64`` or ``ed25519:base64``; ValueError when it is not a key."""
    body = text.strip().removeprefix("ed25519:")
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not a base64 Ed25519 public key: {text[:20]!r}") from exc
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key has 32 bytes, got {len(raw)}")
    return raw


def public_key_record(public_raw: bytes) -> PublicKey:
    return PublicKey(keyid=keyid_of(public_raw), public_key=base64.b64encode(public_raw).decode())


def generate_private_key_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class Signer:
    """An Ed25519 private key (from PEM bytes or a file) that signs documents."""

    def __init__(self, pem: bytes) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise TypeError("the signing key is not an Ed25519 private key")
        self._key = key
        self.public_raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.keyid = keyid_of(self.public_raw)

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        return cls(Path(path).read_bytes())

    @property
    def public_key(self) -> PublicKey:
        return public_key_record(self.public_raw)

    def signature(self, signed: BaseModel) -> Signature:
        sig = self._key.sign(canonical_bytes(signed))
        return Signature(keyid=self.keyid, sig=base64.b64encode(sig).decode())

    def sign_release(self, release: ModelRelease) -> SignedRelease:
        return SignedRelease(signed=release, signatures=(self.signature(release),))

    def sign_rotation(self, rotation: KeyRotation) -> SignedKeyRotation:
        return SignedKeyRotation(signed=rotation, signatures=(self.signature(rotation),))


def add_signature(doc: SignedRelease, signer: Signer) -> SignedRelease:
    """``doc`` with one more signature (a second key, e.g. during a rotation)."""
    return SignedRelease(signed=doc.signed, signatures=(*doc.signatures, signer.signature(doc.signed)))


#: ``(raw 32-byte public key, 64-byte signature, message) -> valid?``: one Ed25519 check, never raising.
RawVerifier = Callable[[bytes, bytes, bytes], bool]


def cryptography_verifier(public_raw: bytes, signature: bytes, message: bytes) -> bool:
    """:data:`RawVerifier` on ``cryptography`` (imported on the first call)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def verify(signed: BaseModel, signatures: Iterable[Signature], trusted: Mapping[str, bytes],
           check: RawVerifier = cryptography_verifier) -> str:
    """The key id of a valid signature by a ``trusted`` key (keyid -> raw public key).

    Raises :class:`SignatureError`: ``unsigned`` without signatures, ``unknown_key`` when no
    signature comes from a trusted key, ``bad_signature`` when a trusted key's signature fails.
    ``check`` does the Ed25519 arithmetic (``cryptography`` by default; the gateway passes OpenSSL's,
    ``edge_agent.updates.ed25519``): the rule is this function's alone.
    """
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
        if check(raw, signature, message):
            return sig.keyid
    if tried_trusted:
        raise SignatureError("bad_signature", "a trusted key's signature does not verify (document altered)")
    keyids = ", ".join(s.keyid[:12] for s in sigs)
    raise SignatureError("unknown_key", f"signed only by keys this gateway does not trust ({keyids})")


def trusted_map(keys: Iterable[str | bytes]) -> dict[str, bytes]:
    """keyid -> raw public key, from base64 strings (or raw bytes)."""
    out: dict[str, bytes] = {}
    for key in keys:
        raw = key if isinstance(key, bytes) else decode_public_key(key)
        out[keyid_of(raw)] = raw
    return out



# key rotation: the one rule, applied by the cloud (accepting a rotation) and by every gateway (trusting it) ------------


def check_rotation(doc: SignedKeyRotation, trusted: Mapping[str, bytes], last_version: int,
                   check: RawVerifier = cryptography_verifier) -> None:
    """Whether ``doc`` may follow the rotations applied so far; :class:`SignatureError` otherwise.

    A rotation is accepted only when its ``rotation_version`` is above ``last_version`` (code ``stale``), it is
    signed by a key trusted *before* it (:func:`verify`), and every key it adds carries the key id of its public key
    (``bad_signature``). Apply it with :func:`rotate_trust`.
    """
    rot = doc.signed
    if rot.rotation_version <= last_version:
        raise SignatureError("stale", f"rotation_version must be above {last_version}")
    verify(rot, doc.signatures, trusted, check)
    for key in rot.add:
        if keyid_of(decode_public_key(key.public_key)) != key.keyid:
            raise SignatureError("bad_signature", f"key {key.keyid[:12]} does not match its public key")


def rotate_trust(trusted: Mapping[str, bytes], rotation: KeyRotation) -> dict[str, bytes]:
    """The trusted keys after ``rotation``: its keys added, then its revocations removed (a revoked key stays revoked
    even when configuration still lists it, because trust is always rebuilt as configured + rotations in order)."""
    out = dict(trusted)
    out.update(trusted_map([key.public_key for key in rotation.add]))
    for keyid in rotation.revoke:
        out.pop(keyid, None)
    return out
