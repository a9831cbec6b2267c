"""Checks on a release before its model may run: pure functions, each refusal a :data:`RejectCode`.

Order (cheapest and most telling first): signature by a trusted key -> replay (metadata_version
must grow per task) -> expiry -> downgrade (lower model_version only with a signed rollback) ->
agent version -> the embedded manifest (parses, agrees with the release) -> compatibility (tensor
specs this agent's feature code can feed). After the download: length, then sha256.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from pydantic import BaseModel, ValidationError

from models.manifest import ModelManifest
from protocols import ArtifactRef, ModelRelease, RejectCode, Signature, SignedKeyRotation, SignedRelease
from protocols.signing import canonical_bytes

_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)")


class Rejected(Exception):
    """A release (or key rotation) is refused; ``code`` is a :data:`protocols.RejectCode`."""

    def __init__(self, code: RejectCode, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code: RejectCode = code
        self.reason = reason[:500]


#: Refusals that the same document will always get again (not retried on the next poll).
PERMANENT_CODES: frozenset[str] = frozenset(
    {
        "unsigned",
        "unknown_key",
        "bad_signature",
        "expired",
        "replay",
        "downgrade",
        "sha256_mismatch",
        "length_mismatch",
        "manifest_mismatch",
        "incompatible",
        "agent_too_old",
        "load_failed",
    }
)


def doc_digest(doc: BaseModel) -> str:
    """sha256 of a signed document's canonical JSON (signed part and signatures)."""
    return hashlib.sha256(canonical_bytes(doc)).hexdigest()


def check_signature(signed: BaseModel, signatures: Iterable[Signature], trusted: Mapping[str, bytes]) -> str:
    """The trusted key id that signed ``signed``; :class:`Rejected` otherwise."""
    from edge_agent.updates.ed25519 import verifier  # OpenSSL's libcrypto, already mapped: not cryptography
    from protocols.signing import SignatureError, verify

    try:
        return verify(signed, signatures, trusted, verifier())
    except SignatureError as exc:
        raise Rejected(exc.code, str(exc)) from None  # type: ignore[arg-type]


def check_rotation(doc: SignedKeyRotation, trusted: Mapping[str, bytes], last_version: int) -> None:
    """``protocols.signing.check_rotation`` (the rule the cloud applies too), refusals as :class:`Rejected`."""
    from edge_agent.updates.ed25519 import verifier
    from protocols.signing import SignatureError
    from protocols.signing import check_rotation as rule

    try:
        rule(doc, trusted, last_version, verifier())
    except SignatureError as exc:
        raise Rejected(exc.code, str(exc)) from None  # type: ignore[arg-type]


def semver(text: str) -> tuple[int, int, int]:
    m = _SEMVER.match(text)
    if m is None:
        return (0, 0, 0)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)))


def check_release(
    doc: SignedRelease,
    *,
    task: str,
    trusted: Mapping[str, bytes],
    now_ms: int,
    last_metadata_version: int,
    running_version: int | None,
    agent_version: str,
) -> ModelManifest:
    """Every check that needs no artifact; returns the embedded manifest. Raises :class:`Rejected`."""
    check_signature(doc.signed, doc.signatures, trusted)
    rel = doc.signed
    if rel.metadata_version <= last_metadata_version:
        raise Rejected(
            "replay",
            f"metadata_version {rel.metadata_version} is not above the last accepted {last_metadata_version}",
        )
    if rel.expires_ts <= now_ms:
        raise Rejected("expired", f"the release expired at {rel.expires_ts} (now {now_ms})")
    if running_version is not None and rel.model_version < running_version and not rel.rollback:
        raise Rejected(
            "downgrade",
            f"model_version {rel.model_version} is below the running {running_version} without a signed rollback",
        )
    if semver(rel.min_agent_version) > semver(agent_version):
        raise Rejected("agent_too_old", f"needs agent {rel.min_agent_version}, this is {agent_version}")
    manifest = parse_manifest(rel, task)
    check_compatible(manifest)
    return manifest


def parse_manifest(rel: ModelRelease, task: str) -> ModelManifest:
    """The embedded manifest as a :class:`ModelManifest` that agrees with the release."""
    if rel.task != task:
        raise Rejected("manifest_mismatch", f"release task {rel.task!r} delivered as {task!r}")
    try:
        manifest = ModelManifest.model_validate(rel.manifest)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise Rejected(
            "manifest_mismatch", f"embedded manifest invalid at {where}: {first.get('msg')}"
        ) from None
    if (
        manifest.task != rel.task
        or manifest.version != rel.model_version
        or manifest.sha256 != rel.artifact.sha256
        or manifest.size_bytes != rel.artifact.length
    ):
        raise Rejected(
            "manifest_mismatch", "embedded manifest disagrees with the release (task/version/artifact)"
        )
    return manifest


def _size(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape else 1


def check_compatible(manifest: ModelManifest) -> None:
    """The tensor specs fit this agent's feature code (anomaly: n_inputs -> 2; demand: n_inputs -> 3 x horizon;
    device_anomaly: MAX_CHANNELS x N_FEATURES -> MAX_CHANNELS)."""
    if len(manifest.inputs) != 1 or len(manifest.outputs) != 1:
        raise Rejected(
            "incompatible",
            f"needs 1 input and 1 output tensor, has {len(manifest.inputs)}/{len(manifest.outputs)}",
        )
    spec_in, spec_out = manifest.inputs[0], manifest.outputs[0]
    if any(d < 1 for d in spec_in.shape + spec_out.shape) or spec_in.shape[:1] != (1,):
        raise Rejected("incompatible", f"batch-1 tensors needed, input shape is {spec_in.shape}")
    for spec in (spec_in, spec_out):
        if spec.dtype != "float32" and spec.quantization is None:
            raise Rejected("incompatible", f"tensor {spec.name} is {spec.dtype} without quantization params")
    if manifest.task == "anomaly":
        feats = manifest.sensor_features
        if feats is None:
            raise Rejected("incompatible", "anomaly manifest without sensor_features")
        want_in, want_out = feats.n_inputs, 2
    elif manifest.task == "device_anomaly":
        # The device forecaster's fixed layout (models.device_features; numpy only once a release is checked).
        from models.device_features import MAX_CHANNELS, N_FEATURES

        want_in, want_out = MAX_CHANNELS * N_FEATURES, MAX_CHANNELS
    else:
        dfeats = manifest.demand_features
        if dfeats is None:
            raise Rejected("incompatible", "demand manifest without demand_features")
        want_in, want_out = dfeats.n_inputs, 3 * dfeats.horizon
    if _size(spec_in.shape) != want_in:
        raise Rejected(
            "incompatible",
            f"input {spec_in.shape} has {_size(spec_in.shape)} values, features give {want_in}",
        )
    if _size(spec_out.shape) != want_out:
        raise Rejected(
            "incompatible", f"output {spec_out.shape} has {_size(spec_out.shape)} values, expected {want_out}"
        )


def check_artifact(path: Path, ref: ArtifactRef) -> None:
    """The staged file has exactly the signed length and sha256."""
    size = path.stat().st_size
    if size != ref.length:
        raise Rejected("length_mismatch", f"artifact has {size} bytes, the release signs {ref.length}")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    if digest.hexdigest() != ref.sha256:
        raise Rejected(
            "sha256_mismatch",
            f"artifact sha256 {digest.hexdigest()[:16]}… differs from the signed {ref.sha256[:16]}…",
        )
