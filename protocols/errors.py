"""Errors raised when bytes off the wire are not a valid Edgehouse message."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

_QUOTED = re.compile(r"'([^']+)'")


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
        msg = str(err.get("msg", "invalid"))
        tag = _union_tag_problem(err)
        if tag is not None:
            msg, name = tag
            parts.append(name)
        loc = ".".join(str(p) for p in parts)
        extra = f" ({len(exc.errors())} errors)" if exc.error_count() > 1 else ""
        return cls(f"{msg}{extra}", loc or None)


def _union_tag_problem(err: Any) -> tuple[str, str] | None:
    """A readable reason and the field for a discriminated union's missing or unknown tag.

    pydantic names the discriminator by its Python attribute (``'schema_' | 'schema'``); the wire
    field is the alias, the last quoted name.
    """
    kind = err.get("type")
    if kind not in ("union_tag_not_found", "union_tag_invalid"):
        return None
    ctx = err.get("ctx") or {}
    names = _QUOTED.findall(str(ctx.get("discriminator", "")))
    field = names[-1] if names else "type"
    if kind == "union_tag_not_found":
        return f"missing field {field!r}", field
    expected = str(ctx.get("expected_tags", ""))
    return f"unknown {field} {str(ctx.get('tag', ''))[:64]!r} (expected one of {expected})", field
