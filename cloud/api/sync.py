"""``POST /api/v1/sync``: a gateway's (gzip) batch of outbox records in, a SyncAck out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from cloud.api.sync_columnar import ADVERTISED, columnar_document, is_columnar
from cloud.auth import GatewayDep
from cloud.deps import EngineDep, SettingsDep
from cloud.errors import ErrorBody, FieldError, validation_error_response
from cloud.services import sync as sync_service
from cloud.services import sync_columnar
from cloud.services.errors import BadRequest, PayloadTooLarge, ServiceError
from cloud.services.reorder import ReorderPolicy
from cloud.settings import CloudSettings
from protocols import SyncAck
from protocols.columnar import CONTENT_TYPE

router = APIRouter(prefix="/api/v1", tags=["sync"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 413, 415, 422)
}


async def read_limited_body(request: Request, settings: SettingsDep) -> bytes:
    """The raw request body, refused with 413 as soon as it exceeds ``max_body_bytes``."""
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("Content-Length is not a number", "content-length")
        if int(declared) > limit:
            raise PayloadTooLarge(f"body of {declared} bytes exceeds {limit}", "body")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"body exceeds {limit} bytes", "body")
    return bytes(body)


RawBody = Annotated[bytes, Depends(read_limited_body)]


def _reorder_policy(settings: CloudSettings) -> ReorderPolicy:
    return ReorderPolicy(lead_time_days=settings.reorder_lead_time_days, safety_units=settings.reorder_safety_units)


@router.post(
    "/sync",
    response_model=SyncAck,
    responses=_ERRORS,
    openapi_extra={"requestBody": {"required": True, "description": "A protocols.SyncBatch as JSON, "
                                   "optionally with Content-Encoding: gzip; or the same batch in the "
                                   f"columnar encoding ({CONTENT_TYPE}, protocols.columnar) where "
                                   "Accept-Post lists it",
                                   "content": {"application/json": {"schema": {
                                       "$ref": "#/components/schemas/SyncBatch"}}}}},
)
def post_sync(
    principal: GatewayDep,
    raw: RawBody,
    engine: EngineDep,
    settings: SettingsDep,
    content_encoding: Annotated[str | None, Header()] = None,
    content_type: Annotated[str | None, Header()] = None,
) -> Response:
    """Store every record of the batch at most once; the ack lists the ids stored now and those already held."""
    assert principal.gateway_id is not None, "gateway tokens are bound to a gateway"
    try:
        if is_columnar(content_type):
            document = columnar_document(raw, content_encoding, settings.max_decompressed_bytes)
            ack = sync_columnar.ingest_columnar(engine, document, principal.gateway_id,
                                                settings.max_decompressed_bytes, _reorder_policy(settings))
        else:
            ack = sync_service.ingest(engine, raw, content_encoding, principal.gateway_id,
                                      settings.max_decompressed_bytes, _reorder_policy(settings))
        # The ack as FastAPI would serialize ``response_model`` (by alias), answered here: for a plain ``def``
        # endpoint FastAPI serializes the return value in its thread pool, a second thread hop per batch.
        return Response(ack.model_dump_json(by_alias=True), media_type="application/json", headers=ADVERTISED)
    except ValidationError as exc:
        refused = validation_error_response(exc)
    except ServiceError as exc:  # answered here so that the refusal carries the advertisement too
        refused = JSONResponse(ErrorBody(detail=[FieldError(field=exc.field, message=exc.message)]).model_dump(),
                               status_code=exc.status_code)
    refused.headers.update(ADVERTISED)
    return refused
