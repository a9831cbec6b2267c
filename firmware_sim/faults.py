"""Fault-injection settings: one rate per fault type, from the fleet file and/or the CLI.

Message-level faults (``duplicates``, ``reorder``, ``late``, ``malformed``) are probabilities per
published device message. Device-level faults (``reboots``, ``clock_skew``, ``disconnects``) are
probabilities per device sample step (one telemetry sample, or one scanner/portal step).
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Rate = Annotated[float, Field(ge=0.0, le=1.0)]

MalformedKind = Literal["invalid_json", "wrong_type", "out_of_range", "unknown_field", "truncated"]
MALFORMED_KINDS: Final[tuple[MalformedKind, ...]] = (
    "invalid_json",
    "wrong_type",
    "out_of_range",
    "unknown_field",
    "truncated",
)
FaultName = Literal["duplicate", "reorder", "late", "malformed", "reboot", "clock_skew", "disconnect"]

#: CLI/TOML rate names (plural where natural) -> field names.
RATE_FIELDS: Final[tuple[str, ...]] = (
    "duplicates",
    "reorder",
    "late",
    "malformed",
    "reboots",
    "clock_skew",
    "disconnects",
)


class FaultSpecError(ValueError):
    """A ``--faults`` string or ``[faults]`` table that cannot be used; the message names the key."""


class FaultConfig(BaseModel):
    """Rates of every fault type plus the few knobs that shape them (simulated seconds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    duplicates: Rate = 0.0
    reorder: Rate = 0.0
    late: Rate = 0.0
    malformed: Rate = 0.0
    reboots: Rate = 0.0
    clock_skew: Rate = 0.0
    disconnects: Rate = 0.0
    late_delay_s: tuple[float, float] = (20.0, 300.0)
    disconnect_s: tuple[float, float] = (30.0, 600.0)
    skew_s: tuple[float, float] = (5.0, 900.0)

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        for name in ("late_delay_s", "disconnect_s", "skew_s"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high")
        return self

    @property
    def any(self) -> bool:
        return any(getattr(self, f) > 0 for f in RATE_FIELDS)

    def with_overrides(self, spec: str) -> FaultConfig:
        """Apply a CLI string such as ``duplicates=0.01,malformed=0.005`` (``none`` clears all)."""
        return self.model_copy(update=parse_fault_spec(spec))


def parse_fault_spec(spec: str) -> dict[str, float]:
    """Parse ``name=rate,...``; ``none`` (or ``off``) sets every rate to zero."""
    spec = spec.strip()
    if spec.lower() in ("none", "off", ""):
        return {f: 0.0 for f in RATE_FIELDS}
    out: dict[str, float] = {}
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep:
            raise FaultSpecError(f"fault {part!r} must be written name=rate")
        if name not in RATE_FIELDS:
            raise FaultSpecError(f"unknown fault {name!r}; known: {', '.join(RATE_FIELDS)}")
        try:
            rate = float(value)
        except ValueError:
            raise FaultSpecError(f"fault {name!r}: rate {value!r} is not a number") from None
        out[name] = rate
    try:
        FaultConfig.model_validate(out)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise FaultSpecError(f"fault {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    return out
