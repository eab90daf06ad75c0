"""HTTP routes of pins: create (JSON, base64 images or asset ids), list, read, delete."""

from __future__ import annotations

from fastapi import APIRouter

from serving.http.auth import TenantDep
from serving.http.deps import CoreDep
from serving.http.pins.protocol import DeletedPin, PinCreate, PinList, PinObject
from serving.http.pins.serving import ServingPins

router = APIRouter(tags=["pins"])


@router.post("/v1/pins", response_model=PinObject, status_code=201)
async def create_pin(request: PinCreate, state: CoreDep, tenant: TenantDep) -> PinObject:
    """Pin a character or product: 1-4 pictures, embedded once for every installed
    IP-Adapter and kept as the caller's. Free. Bad input is refused (400, 413 for an
    image over the limits, 404 for an asset that is not the caller's), nothing stored."""
    return await ServingPins(state).create(tenant, request)


@router.get("/v1/pins", response_model=PinList)
async def list_pins(state: CoreDep, tenant: TenantDep) -> PinList:
    """The caller's pins, newest first."""
    return await ServingPins(state).list(tenant)


@router.get("/v1/pins/{pin_id}", response_model=PinObject)
async def get_pin(pin_id: str, state: CoreDep, tenant: TenantDep) -> PinObject:
    """One of the caller's pins (anyone else's is 404)."""
    return await ServingPins(state).get(tenant, pin_id)


@router.delete("/v1/pins/{pin_id}", response_model=DeletedPin)
async def delete_pin(pin_id: str, state: CoreDep, tenant: TenantDep) -> DeletedPin:
    """Delete one of the caller's pins and its embeddings (anyone else's is 404)."""
    return await ServingPins(state).delete(tenant, pin_id)
