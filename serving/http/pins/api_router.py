"""HTTP routes of pins: create (JSON, base64 images or asset ids), list, read, delete.

A route converts the request once (``PinCreate`` → the core's ``PinOrder``), calls the
core (``core.pinning`` to make a pin, the ``core.pins`` service otherwise, blocking work
off the event loop) and encodes the record with the models it applies to."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from serving.core.app import KilnCore
from serving.core.pins.conditioning import models_for
from serving.core.pins.pinning import PinOrder
from serving.core.pins.record import PinRecord
from serving.http.auth import TenantDep
from serving.http.deps import CoreDep
from serving.http.pins.protocol import DeletedPin, PinCreate, PinList, PinObject

router = APIRouter(tags=["pins"])


@router.post("/v1/pins", response_model=PinObject, status_code=201)
async def create_pin(request: PinCreate, core: CoreDep, tenant: TenantDep) -> PinObject:
    """Pin a character or product: 1-4 pictures, embedded once for every installed
    IP-Adapter and kept as the caller's. Free. Bad input is refused (400, 413 for an
    image over the limits, 404 for an asset that is not the caller's), nothing stored."""
    order = PinOrder(
        kind=request.kind,
        name=request.name,
        images=tuple(request.images),
        asset_ids=tuple(request.asset_ids),
    )
    return _object(core, await core.pinning.create(tenant.id, order))


@router.get("/v1/pins", response_model=PinList)
async def list_pins(core: CoreDep, tenant: TenantDep) -> PinList:
    """The caller's pins, newest first."""
    records = await asyncio.to_thread(core.pins.list, tenant.id)
    return PinList(data=[_object(core, r) for r in records])


@router.get("/v1/pins/{pin_id}", response_model=PinObject)
async def get_pin(pin_id: str, core: CoreDep, tenant: TenantDep) -> PinObject:
    """One of the caller's pins (anyone else's is 404)."""
    return _object(core, await asyncio.to_thread(core.pins.get, tenant.id, pin_id))


@router.delete("/v1/pins/{pin_id}", response_model=DeletedPin)
async def delete_pin(pin_id: str, core: CoreDep, tenant: TenantDep) -> DeletedPin:
    """Delete one of the caller's pins and its embeddings (anyone else's is 404)."""
    await asyncio.to_thread(core.pins.delete, tenant.id, pin_id)
    return DeletedPin(id=pin_id)


def _object(core: KilnCore, record: PinRecord) -> PinObject:
    """The wire pin: the record and the base models it applies to."""
    return PinObject.of(record, models_for(core.catalog, record.components, bool(record.pictures)))
