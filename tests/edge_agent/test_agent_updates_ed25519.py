"""The agent's Ed25519 check on OpenSSL's libcrypto gives ``protocols.signing.verify``'s rule the same answers
as ``cryptography`` on every case, and a release or key rotation checked on the gateway never loads ``cryptography``."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from update_testkit import anomaly_v2, make_release, new_signer, rotation

from edge_agent.updates import ed25519
from protocols import Signature, SignedRelease
from protocols.signing import SignatureError, trusted_map
from protocols.signing import verify as reference


def _outcome(fn: Callable[..., str], doc: SignedRelease, trusted: dict[str, bytes]) -> str:
    try:
        return "ok:" + fn(doc.signed, doc.signatures, trusted)
    except SignatureError as exc:
        return "err:" + exc.code


def _cases() -> list[tuple[str, SignedRelease, dict[str, bytes]]]:
    a, b = new_signer(), new_signer()
    good = make_release(a, anomaly_v2(), 2, 2)
    trusted = trusted_map([a.public_key.public_key])
    altered = SignedRelease(signed=good.signed.model_copy(update={"expires_ts": good.signed.expires_ts + 1}), signatures=good.signatures)
    sig = good.signatures[0]
    raw = base64.b64decode(sig.sig)
    flipped = Signature(keyid=sig.keyid, sig=base64.b64encode(bytes([raw[0] ^ 1]) + raw[1:]).decode())
    # past the schema (64 bytes of base64), as only a bug could build them
    short = Signature.model_construct(keyid=sig.keyid, sig=base64.b64encode(raw[:63]).decode())
    junk = Signature.model_construct(keyid=sig.keyid, sig="not base64!")
    by_b = make_release(b, anomaly_v2(), 2, 2)
    both = SignedRelease(signed=good.signed, signatures=(*by_b.signatures, flipped, sig))
    return [
        ("valid", good, trusted),
        ("altered", altered, trusted),
        ("flipped", SignedRelease(signed=good.signed, signatures=(flipped,)), trusted),
        ("short", SignedRelease(signed=good.signed, signatures=(short,)), trusted),
        ("junk", SignedRelease(signed=good.signed, signatures=(junk,)), trusted),
        ("unknown", by_b, trusted),
        ("unsigned", make_release(None, anomaly_v2(), 2, 2), trusted),
        ("valid after others", both, trusted),
        ("wrong key under the id", good, {sig.keyid: base64.b64decode(b.public_key.public_key)}),
        ("short key under the id", good, {sig.keyid: b"\x01" * 31}),
    ]


def test_libcrypto_is_found_here() -> None:
    assert ed25519.libcrypto() is not None  # else the check below would only compare the fallback


@pytest.mark.parametrize("case", range(10))
def test_agrees_with_the_reference(case: int) -> None:
    name, doc, trusted = _cases()[case]
    def on_libcrypto(signed: object, signatures: object, keys: dict[str, bytes]) -> str:
        return reference(signed, signatures, keys, ed25519.verifier())  # type: ignore[arg-type]

    got, want = _outcome(on_libcrypto, doc, trusted), _outcome(reference, doc, trusted)
    assert got == want, name
    assert got.startswith("ok:") == (name in ("valid", "valid after others")), name


def test_checking_a_release_and_a_rotation_does_not_load_cryptography(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from protocols import SignedKeyRotation, SignedRelease\n"
        "from protocols.signing import trusted_map\n"
        "from edge_agent.updates.verify import check_rotation, check_signature\n"
        "doc = SignedRelease.model_validate_json(open(sys.argv[1]).read())\n"
        "rot = SignedKeyRotation.model_validate_json(open(sys.argv[3]).read())\n"
        "trusted = trusted_map([open(sys.argv[2]).read()])\n"
        "check_rotation(rot, trusted, 0)\n"
        "print(check_signature(doc.signed, doc.signatures, trusted), 'cryptography' in sys.modules)\n"
    )
    signer, added = new_signer(), new_signer()
    doc = make_release(signer, anomaly_v2(), 2, 2)
    (tmp_path / "doc.json").write_text(doc.model_dump_json())
    (tmp_path / "key").write_text(signer.public_key.public_key)
    (tmp_path / "rot.json").write_text(rotation(signer, 1, add=(added,)).model_dump_json())
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "doc.json"), str(tmp_path / "key"), str(tmp_path / "rot.json")],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert out == [signer.keyid, "False"]
