"""Keys and offline signing (admin): trusted keys, key rotations, signing requests, signed uploads."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse

from cloud.api.model_deps import KeyringDep, wire_body, wire_body_openapi
from cloud.auth import AdminDep
from cloud.deps import EngineDep
from cloud.errors import ErrorBody
from cloud.model_schemas import KeysOut, ReleaseOut, SigningRequestOut
from cloud.schemas import RowIdPath
from cloud.services import model_signing as service
from protocols.model_update import ModelTask, SignedKeyRotation, SignedRelease

router = APIRouter(prefix="/api/v1/models", tags=["model signing"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 422)}


@router.get("/signing-requests", response_model=list[SigningRequestOut], responses=_ERRORS)
def signing_requests(_admin: AdminDep, engine: EngineDep,
                     state: Annotated[Literal["pending", "signed", "all"], Query()] = "pending"
                     ) -> list[SigningRequestOut]:
    """Release documents waiting for an offline signature (sign the ``release`` object as is)."""
    return service.signing_requests(engine, None if state == "all" else state)


@router.post("/releases", status_code=201, response_model=ReleaseOut, responses=_ERRORS,
             openapi_extra=wire_body_openapi(SignedRelease))
def upload_release(_admin: AdminDep, engine: EngineDep, keyring: KeyringDep,
                   doc: Annotated[SignedRelease, Depends(wire_body(SignedRelease))]) -> ReleaseOut:
    """Store an offline-signed release (body: ``protocols.SignedRelease``) for a pending request."""
    return service.accept_signed_release(engine, keyring, doc)


@router.get("/{task}/releases/{metadata_version}", response_model=SignedRelease, responses=_ERRORS)
def release_document(task: Annotated[ModelTask, Path()], metadata_version: RowIdPath,
                     _admin: AdminDep, engine: EngineDep) -> JSONResponse:
    """One signed release document as gateways receive it."""
    doc = service.get_release(engine, task, metadata_version)
    return JSONResponse(doc.model_dump(mode="json", by_alias=True))


@router.get("/keys", response_model=KeysOut, responses=_ERRORS)
def keys(_admin: AdminDep, engine: EngineDep, keyring: KeyringDep) -> KeysOut:
    """The online key (if any), every trusted key id, and the highest rotation version."""
    return service.keys_info(engine, keyring)


@router.post("/keys/rotations", status_code=201, response_model=KeysOut, responses=_ERRORS,
             openapi_extra=wire_body_openapi(SignedKeyRotation))
def add_rotation(_admin: AdminDep, engine: EngineDep, keyring: KeyringDep,
                 doc: Annotated[SignedKeyRotation, Depends(wire_body(SignedKeyRotation))]) -> KeysOut:
    """Accept a ``protocols.SignedKeyRotation`` signed by a trusted key; served to every gateway."""
    return service.add_rotation(engine, keyring, doc)
