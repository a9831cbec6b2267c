"""Which Ed25519 keys this gateway trusts: the configured ones plus accepted key rotations.

A :class:`~protocols.KeyRotation` is accepted only when signed by a key trusted *before* it and
when its ``rotation_version`` is above the last accepted one; what it adds and revokes is kept
in the install state (:class:`~edge_agent.updates.state.KeysState`), so it survives restarts.
A revoked key stays revoked even when the config still lists it.
"""

from __future__ import annotations

from collections.abc import Iterable

from edge_agent.updates.state import KeysState, Rejection
from edge_agent.updates.verify import Rejected, check_rotation, doc_digest
from protocols import SignedKeyRotation
from protocols.signing import decode_public_key, keyid_of


class TrustStore:
    def __init__(self, configured_keys: Iterable[str], keys: KeysState) -> None:
        self._configured = {keyid_of(raw): raw for raw in (decode_public_key(k) for k in configured_keys)}
        self.keys = keys

    def trusted(self) -> dict[str, bytes]:
        """keyid -> raw public key."""
        out = dict(self._configured)
        out.update({kid: decode_public_key(b64) for kid, b64 in self.keys.added.items()})
        for kid in self.keys.revoked:
            out.pop(kid, None)
        return out

    def keyids(self) -> tuple[str, ...]:
        return tuple(sorted(self.trusted()))

    def apply(self, rotations: Iterable[SignedKeyRotation], now_ms: int) -> tuple[bool, list[Rejected]]:
        """Apply the rotations not applied yet, in ``rotation_version`` order.

        Returns (whether the trusted set changed, the new refusals). A refused document is
        remembered by digest, so serving it again is neither re-checked nor re-counted.
        """
        changed = False
        refused: list[Rejected] = []
        for doc in sorted(rotations, key=lambda d: d.signed.rotation_version):
            rot = doc.signed
            if rot.rotation_version <= self.keys.rotation_version:
                continue  # applied before (the desired document carries the history)
            digest = doc_digest(doc)
            if self.keys.rejected is not None and self.keys.rejected.digest == digest:
                continue
            try:
                check_rotation(doc, self.trusted(), self.keys.rotation_version)
            except Rejected as exc:
                self.keys.rejected = Rejection(
                    code=exc.code,
                    reason=f"key rotation {rot.rotation_version}: {exc.reason}",
                    ts=now_ms,
                    metadata_version=rot.rotation_version,
                    digest=digest,
                )
                refused.append(exc)
                continue
            for key in rot.add:
                self.keys.added[key.keyid] = key.public_key
                if key.keyid in self.keys.revoked:
                    self.keys.revoked.remove(key.keyid)
            for kid in rot.revoke:
                self.keys.added.pop(kid, None)
                if kid not in self.keys.revoked:
                    self.keys.revoked.append(kid)
            self.keys.rotation_version = rot.rotation_version
            changed = True
        return changed, refused
