"""Environment overrides of the agent configuration: ``EDGEHOUSE_AGENT_<KEY>``, nested with ``__``.

``EDGEHOUSE_AGENT_CLOUD__URL=…`` sets ``[cloud] url``; names are case-insensitive. A value for a
list, table or section (``EDGEHOUSE_AGENT_MQTT__FILTERS='["a/#"]'``, ``EDGEHOUSE_AGENT_MQTT='{"port": 1}'``)
is JSON; every other value is the plain string, which pydantic converts to the field's type.
Overrides are deep-merged over the file's values and win over them. A name under the prefix that
matches no key fails start-up naming the key (:func:`env_overrides` raises ``ValueError``).

Plain pydantic v2, no pydantic-settings: the agent is a long-running daemon on a small gateway,
and that package (with python-dotenv and asyncio) cost about 2.7 MiB of resident memory.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

ENV_PREFIX = "EDGEHOUSE_AGENT_"
NESTED_DELIMITER = "__"
_COMPLEX = (list, tuple, dict, set, frozenset)


class UnknownEnvKey(ValueError):
    """An ``EDGEHOUSE_AGENT_*`` variable names no configuration key."""

    def __init__(self, key: str, name: str) -> None:
        super().__init__(f"{key}: unknown key (not permitted) (environment variable {name})")
        self.key = key


def _members(annotation: Any) -> list[Any]:
    """The types an annotation admits, with ``Annotated`` and ``X | None`` unwrapped."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def _section(annotation: Any) -> type[BaseModel] | None:
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return member
    return None


def _is_complex(annotation: Any) -> bool:
    """Whether a value of this field comes as JSON (a section, list, tuple, set or table)."""
    return any(
        (isinstance(m, type) and issubclass(m, BaseModel)) or (typing.get_origin(m) or m) in _COMPLEX
        for m in _members(annotation)
    )


def _leaf_value(annotation: Any, raw: str) -> Any:
    if not _is_complex(annotation):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw  # not JSON: validation then names the key ("Input should be a valid list")


def _place(model: type[BaseModel], parts: list[str], raw: str, name: str) -> dict[str, Any]:
    """The nested mapping ``parts`` → value, checked against ``model``'s keys as far as they go."""
    key, rest = parts[0], parts[1:]
    field = model.model_fields.get(key)
    if field is None:  # the section (extra="forbid") rejects it, naming the dotted key
        return {key: _nest(rest, raw)}
    if not rest:
        return {key: _leaf_value(field.annotation, raw)}
    section = _section(field.annotation)
    if section is None:
        raise UnknownEnvKey(".".join(parts), name)
    return {key: _place(section, rest, raw, name)}


def _nest(parts: list[str], raw: str) -> Any:
    value: Any = raw
    for part in reversed(parts):
        value = {part: value}
    return value


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` merged in: tables merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def env_overrides(model: type[BaseModel], environ: Mapping[str, str]) -> dict[str, Any]:
    """The overrides the ``EDGEHOUSE_AGENT_*`` variables of ``environ`` make to ``model``'s keys.

    Variables are applied in name order, so a more specific one (``…MQTT__PORT``) wins over the
    section it sits in (``…MQTT``) whatever order the environment lists them in.
    """
    found: list[tuple[list[str], str, str]] = []
    for name, raw in environ.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split(NESTED_DELIMITER)
        if not all(parts):
            raise UnknownEnvKey(".".join(parts) or "(empty)", name)
        if parts[0] not in model.model_fields:
            raise UnknownEnvKey(".".join(parts), name)
        found.append((parts, raw, name))
    out: dict[str, Any] = {}
    for parts, raw, name in sorted(found, key=lambda f: (len(f[0]), f[0])):
        out = deep_merge(out, _place(model, parts, raw, name))
    return out
