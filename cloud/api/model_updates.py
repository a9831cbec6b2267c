"""What gateways call to update their models: desired state, artifacts (with Range), reports.

A gateway token may only read and report for its own gateway id; admins may do both for any.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Response
from fastapi.responses import JSONResponse

from cloud.api.byte_ranges import RangeNotSatisfiable, parse_range
from cloud.api.model_deps import wire_body, wire_body_openapi
from cloud.auth import OwnGatewayOrAdminDep, Principal, require_role
from cloud.deps import EngineDep
from cloud.errors import ApiError, ErrorBody
from cloud.schemas import GatewayIdStr
from cloud.services import model_desired, model_registry
from protocols.model_update import ARTIFACT_PATH, DESIRED_PATH, REPORT_PATH, DesiredModels, ModelReport

router = APIRouter(tags=["model updates"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 404, 416, 422)}
GatewayOrAdmin = Annotated[Principal, Depends(require_role("admin", "gateway"))]
GatewayPath = Annotated[GatewayIdStr, Path()]


def _matches(if_none_match: str | None, etag: str) -> bool:
    if if_none_match is None:
        return False
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return etag in tags or "*" in tags


@router.get(DESIRED_PATH, response_model=DesiredModels, responses={**_ERRORS, 304: {"description": "unchanged"}})
def desired(gateway_id: GatewayPath, _principal: OwnGatewayOrAdminDep, engine: EngineDep,
            if_none_match: Annotated[str | None, Header()] = None) -> Response:
    """The models this gateway should run, with a strong ETag; ``If-None-Match`` → 304 when unchanged."""
    doc = model_desired.desired_models(engine, gateway_id)
    etag = model_desired.etag(doc)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if _matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    return JSONResponse(doc.model_dump(mode="json", by_alias=True), headers=headers)


@router.get(ARTIFACT_PATH, responses={**_ERRORS, 206: {"description": "partial content"}},
            response_class=Response)
def artifact(sha256: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")], _principal: GatewayOrAdmin,
             engine: EngineDep, range_: Annotated[str | None, Header(alias="range")] = None) -> Response:
    """The ``.tflite`` bytes; ``Range: bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` → 206, past the end → 416."""
    data = model_registry.artifact(engine, sha256)
    size = len(data)
    headers = {"Accept-Ranges": "bytes", "ETag": f'"{sha256}"', "Cache-Control": "public, max-age=31536000, immutable"}
    try:
        span = parse_range(range_, size)
    except RangeNotSatisfiable:
        raise ApiError(416, f"range outside the {size} bytes of the artifact", field="range",
                       headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"}) from None
    if span is None:
        return Response(data, media_type="application/octet-stream", headers=headers)
    first, last = span
    headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return Response(data[first:last + 1], status_code=206, media_type="application/octet-stream", headers=headers)


@router.post(REPORT_PATH, status_code=204, response_class=Response, responses=_ERRORS,
             openapi_extra=wire_body_openapi(ModelReport))
def report(gateway_id: GatewayPath, _principal: OwnGatewayOrAdminDep, engine: EngineDep,
           body: Annotated[ModelReport, Depends(wire_body(ModelReport))]) -> Response:
    """Store the gateway's ``protocols.ModelReport`` (its newest one is kept); drives rollout gates."""
    if body.gateway_id != gateway_id:
        raise ApiError(422, "gateway_id differs from the path", field="gateway_id")
    model_desired.store_report(engine, body)
    return Response(status_code=204)
