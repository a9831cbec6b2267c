"""Error bodies of the API: every 4xx/5xx answers ``{"detail": [{"field": ..., "message": ...}]}``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from cloud.services.errors import ServiceError
from protocols import RECORD_KINDS

log = logging.getLogger(__name__)

MAX_REPORTED_ERRORS: Final = 50
_REQUEST_PARTS: Final = frozenset({"body", "query", "path", "header", "cookie"})
#: Tags of the discriminated union of sync records: pydantic puts the tag in error locations.
_RECORD_TAGS: Final = frozenset(RECORD_KINDS)


class FieldError(BaseModel):
    field: str | None
    message: str


class ErrorBody(BaseModel):
    detail: list[FieldError]


class ApiError(StarletteHTTPException):
    """An HTTP error whose body names the field (or header) at fault."""

    def __init__(self, status_code: int, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.field = field


def error_location(loc: Sequence[int | str]) -> str | None:
    """Dotted path of a validation error, without the request part or union tags.

    ``("body", "records", 3, "telemetry", "msg", "seq")`` becomes ``records.3.msg.seq``.
    """
    parts = list(loc)
    if parts and parts[0] in _REQUEST_PARTS:
        parts = parts[1:]
    if len(parts) >= 3 and parts[0] == "records" and isinstance(parts[1], int) and parts[2] in _RECORD_TAGS:
        del parts[2]
    return ".".join(str(p) for p in parts) or None


def field_errors(errors: Sequence[Any]) -> list[FieldError]:
    """Field errors from pydantic's error dicts, at most :data:`MAX_REPORTED_ERRORS`."""
    out = []
    for err in list(errors)[:MAX_REPORTED_ERRORS]:
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        loc = err.get("loc", ())
        if err.get("type") == "json_invalid":  # FastAPI puts the character position in the location
            detail = (err.get("ctx") or {}).get("error")
            position = loc[-1] if loc and isinstance(loc[-1], int) else None
            message = f"body is not valid JSON: {detail or message}" + (
                f" (at character {position})" if position is not None else "")
            loc = ()
        out.append(FieldError(field=error_location(loc) or "body", message=message))
    if len(errors) > MAX_REPORTED_ERRORS:
        out.append(FieldError(field=None, message=f"{len(errors) - MAX_REPORTED_ERRORS} more errors not shown"))
    return out


def validation_error_response(exc: ValidationError | RequestValidationError) -> JSONResponse:
    errors = exc.errors(include_url=False) if isinstance(exc, ValidationError) else exc.errors()
    return _response(422, field_errors(errors))


def _response(status: int, errors: list[FieldError], headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorBody(detail=errors).model_dump(), status_code=status, headers=headers)


#: What FastAPI answers (400) when a JSON body cannot even be decoded (e.g. it is not UTF-8).
_BODY_PARSE_ERROR: Final = "There was an error parsing the body"

Authorize = Callable[[Request], None]


def _authorized(request: Request, authorize: Authorize) -> JSONResponse | None:
    """The route's 401/403 when the caller may not call it at all, else None."""
    try:
        authorize(request)
    except ApiError as exc:
        return _response(exc.status_code, [FieldError(field=exc.field, message=str(exc.detail))], exc.headers)
    return None


def _error_handlers(authorize: Authorize) -> dict[type[Exception], Callable[[Request, Exception], Any]]:
    async def on_request_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        if any(e.get("type") == "json_invalid" for e in exc.errors()):  # raised before the role check ran
            refused = _authorized(request, authorize)
            if refused is not None:
                return refused
        return validation_error_response(exc)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if not isinstance(exc, ApiError) and exc.status_code == 400 and exc.detail == _BODY_PARSE_ERROR:
            refused = _authorized(request, authorize)
            if refused is not None:
                return refused
            return _response(422, [FieldError(field="body", message="body is not valid JSON (UTF-8 expected)")])
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette's Allow names only the first route matching the path
            headers = {k: v for k, v in headers.items() if k.lower() != "allow"}
            headers["Allow"] = _allowed_methods(request)
        field = exc.field if isinstance(exc, ApiError) else None
        return _response(exc.status_code, [FieldError(field=field, message=str(exc.detail))], headers or None)

    async def on_service_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        return _response(exc.status_code, [FieldError(field=exc.field, message=exc.message)])

    async def on_database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", exc)
        return _response(503, [FieldError(field=None, message="database unavailable, retry later")],
                         {"Retry-After": "5"})

    return {RequestValidationError: on_request_validation, StarletteHTTPException: on_http_error,
            ServiceError: on_service_error, OperationalError: on_database_unavailable}


_METHODS: Final = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    """The methods the app serves at this request's path (for a 405's ``Allow`` header)."""
    allowed = set()
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.add(method)
    return ", ".join(sorted(allowed))


def install_error_handlers(app: FastAPI, authorize: Authorize) -> None:
    """Answer every error with :class:`ErrorBody`; ``authorize`` runs a route's role checks (see
    ``cloud.auth.authorize_first``) when a body fails to parse before dependencies ran."""
    for exc_type, handler in _error_handlers(authorize).items():
        app.add_exception_handler(exc_type, handler)
