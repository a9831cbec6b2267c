"""Error bodies of the API: every 4xx/5xx answers ``{"detail": [{"field": ..., "message": ...}]}``."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud.services.errors import ServiceError

log = logging.getLogger(__name__)

MAX_REPORTED_ERRORS: Final = 50
_REQUEST_PARTS: Final = frozenset({"body", "query", "path", "header", "cookie"})
#: Tags of the discriminated union of sync records: pydantic puts the tag in error locations.
_RECORD_TAGS: Final = frozenset({"telemetry", "scan", "device_status", "alert", "forecast"})


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
        out.append(FieldError(field=error_location(err.get("loc", ())) or "body", message=message))
    if len(errors) > MAX_REPORTED_ERRORS:
        out.append(FieldError(field=None, message=f"{len(errors) - MAX_REPORTED_ERRORS} more errors not shown"))
    return out


def validation_error_response(exc: ValidationError | RequestValidationError) -> JSONResponse:
    errors = exc.errors(include_url=False) if isinstance(exc, ValidationError) else exc.errors()
    return _response(422, field_errors(errors))


def _response(status: int, errors: list[FieldError], headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorBody(detail=errors).model_dump(), status_code=status, headers=headers)


async def _on_request_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return validation_error_response(exc)


async def _on_http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    field = exc.field if isinstance(exc, ApiError) else None
    return _response(exc.status_code, [FieldError(field=field, message=str(exc.detail))], exc.headers)


async def _on_service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return _response(exc.status_code, [FieldError(field=exc.field, message=exc.message)])


async def _on_database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", exc)
    return _response(503, [FieldError(field=None, message="database unavailable, retry later")],
                     {"Retry-After": "5"})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(ServiceError, _on_service_error)
    app.add_exception_handler(OperationalError, _on_database_unavailable)
