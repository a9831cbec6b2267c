"""Dependencies of the model routers: the keyring, the caller's label, and wire-contract bodies.

Wire contracts (``protocols``) are strict models (tuples, no coercion): they are validated from
the raw JSON body, as a gateway sends it, and errors name the field like any request error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from cloud.deps import get_keyring
from cloud.services.model_signing import Keyring

M = TypeVar("M", bound=BaseModel)


KeyringDep = Annotated[Keyring, Depends(get_keyring)]


def wire_body(model: type[M]) -> Callable[[Request], Awaitable[M]]:
    """A dependency that validates the raw JSON body as ``model`` (422 naming the field otherwise)."""

    async def _parse(request: Request) -> M:
        raw = await request.body()
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            raise RequestValidationError([{**e, "loc": ("body", *e.get("loc", ()))} for e in errors]) from None

    return _parse


def wire_body_openapi(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a :func:`wire_body` body (FastAPI cannot see a body read by hand).

    The model's JSON Schema is inlined (its ``$defs`` resolved in place), so the operation's schema
    stands on its own inside the OpenAPI document.
    """
    schema = model.model_json_schema(by_alias=True, mode="validation")
    defs = schema.pop("$defs", {})
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": _inline(schema, defs)}}}}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return {**_inline(defs[ref.removeprefix("#/$defs/")], defs), **_inline(rest, defs)}
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node
