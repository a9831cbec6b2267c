"""Errors raised when bytes off the wire are not a valid Edgehouse message."""

from __future__ import annotations

from pydantic import ValidationError


class DecodeError(ValueError):
    """A payload that cannot be accepted; ``reason`` says why and ``field`` where (dotted path)."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)

    @classmethod
    def from_validation(cls, exc: ValidationError, skip_tag: bool = False) -> DecodeError:
        """Build from pydantic's first error; ``skip_tag`` drops a discriminated union's tag."""
        err = exc.errors(include_url=False)[0]
        parts = list(err.get("loc", ()))
        if skip_tag and parts and isinstance(parts[0], str) and parts[0].startswith("edgehouse."):
            parts = parts[1:]
        loc = ".".join(str(p) for p in parts)
        extra = f" ({len(exc.errors())} errors)" if exc.error_count() > 1 else ""
        return cls(f"{err.get('msg', 'invalid')}{extra}", loc or None)
