"""Signed model releases and key rotations: canonical bytes, Ed25519 verification, refusals."""

from __future__ import annotations

import pytest

from protocols import ArtifactRef, KeyRotation, ModelRelease, SignedRelease
from protocols.signing import (
    SignatureError,
    Signer,
    add_signature,
    canonical_bytes,
    decode_public_key,
    generate_private_key_pem,
    trusted_map,
    verify,
)

NOW = 1_790_000_000_000


def _release(**over: object) -> ModelRelease:
    fields: dict[str, object] = {
        "task": "anomaly",
        "name": "anomaly",
        "metadata_version": 3,
        "model_version": 2,
        "created_ts": NOW,
        "expires_ts": NOW + 86_400_000,
        "artifact": ArtifactRef(sha256="ab" * 32, length=1234),
        "manifest": {"task": "anomaly", "version": 2, "sha256": "ab" * 32, "size_bytes": 1234, "scale": 0.1},
    }
    fields.update(over)
    return ModelRelease.model_validate(fields)


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer(generate_private_key_pem())


def test_signed_release_round_trips_and_verifies(signer: Signer) -> None:
    doc = signer.sign_release(_release())
    again = SignedRelease.model_validate_json(doc.model_dump_json())
    assert verify(again.signed, again.signatures, trusted_map([signer.public_key.public_key])) == signer.keyid
    assert canonical_bytes(again.signed) == canonical_bytes(doc.signed)


def test_tampered_manifest_is_a_bad_signature(signer: Signer) -> None:
    doc = signer.sign_release(_release())
    text = doc.model_dump_json().replace('"scale":0.1', '"scale":0.2')
    tampered = SignedRelease.model_validate_json(text)
    with pytest.raises(SignatureError) as err:
        verify(tampered.signed, tampered.signatures, trusted_map([signer.public_raw]))
    assert err.value.code == "bad_signature"


def test_unknown_key_and_unsigned_are_refused(signer: Signer) -> None:
    other = Signer(generate_private_key_pem())
    doc = other.sign_release(_release())
    with pytest.raises(SignatureError) as err:
        verify(doc.signed, doc.signatures, trusted_map([signer.public_raw]))
    assert err.value.code == "unknown_key"
    with pytest.raises(SignatureError) as err:
        verify(doc.signed, (), trusted_map([signer.public_raw]))
    assert err.value.code == "unsigned"


def test_a_second_signature_lets_either_key_verify(signer: Signer) -> None:
    other = Signer(generate_private_key_pem())
    doc = add_signature(signer.sign_release(_release()), other)
    assert verify(doc.signed, doc.signatures, trusted_map([other.public_raw])) == other.keyid


def test_release_must_agree_with_its_manifest() -> None:
    with pytest.raises(ValueError, match="sha256"):
        _release(artifact=ArtifactRef(sha256="cd" * 32, length=1234))
    with pytest.raises(ValueError, match="version"):
        _release(model_version=5)
    with pytest.raises(ValueError, match="expires_ts"):
        _release(expires_ts=NOW)


def test_key_rotation_signed_by_old_key(signer: Signer) -> None:
    new = Signer(generate_private_key_pem())
    rot = signer.sign_rotation(KeyRotation(rotation_version=1, created_ts=NOW, add=(new.public_key,)))
    assert verify(rot.signed, rot.signatures, trusted_map([signer.public_raw])) == signer.keyid
    with pytest.raises(ValueError):
        KeyRotation(rotation_version=1, created_ts=NOW)


def test_public_key_text_forms(signer: Signer) -> None:
    b64 = signer.public_key.public_key
    assert decode_public_key(b64) == decode_public_key("ed25519:" + b64) == signer.public_raw
    with pytest.raises(ValueError):
        decode_public_key("not a key")
