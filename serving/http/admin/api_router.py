"""HTTP routes of the admin: tenants, keys, credit grants. All need the admin key."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from serving.core.credits.balances import grant
from serving.http.admin.protocol import (
    BalanceResponse,
    CreatedKey,
    CreateKeyRequest,
    CreateTenantRequest,
    GrantRequest,
    KeyInfo,
    KeyList,
    TenantQueueRequest,
    TenantQueueResponse,
    TenantResponse,
)
from serving.http.auth import AdminDep
from serving.http.deps import CoreDep

router = APIRouter(tags=["admin"])


@router.post("/v1/admin/tenants", response_model=TenantResponse, status_code=201)
async def create_tenant(
    body: CreateTenantRequest, core: CoreDep, admin: AdminDep
) -> TenantResponse:
    """A new tenant with no credits and no keys."""
    tenant = await asyncio.to_thread(core.accounts.create_tenant, body.name)
    return TenantResponse(id=tenant.id, name=tenant.name, created=tenant.created)


@router.post("/v1/admin/tenants/{tenant_id}/keys", response_model=CreatedKey, status_code=201)
async def create_key(
    tenant_id: str, core: CoreDep, admin: AdminDep, body: CreateKeyRequest | None = None
) -> CreatedKey:
    """A new API key for the tenant, shown this once."""
    role = body.role if body is not None else "tenant"
    issued = await asyncio.to_thread(core.accounts.create_key, tenant_id, role)
    return CreatedKey.from_issued(issued)


@router.get("/v1/admin/tenants/{tenant_id}/keys", response_model=KeyList)
async def list_keys(tenant_id: str, core: CoreDep, admin: AdminDep) -> KeyList:
    """The tenant's keys by prefix (revoked ones say when)."""
    keys = await asyncio.to_thread(core.accounts.keys, tenant_id)
    return KeyList(data=[KeyInfo.of(key) for key in keys])


@router.delete("/v1/admin/keys/{key_id}", response_model=KeyInfo)
async def revoke_key(key_id: str, core: CoreDep, admin: AdminDep) -> KeyInfo:
    """Revoke a key: it answers 401 from now on."""
    return KeyInfo.of(await asyncio.to_thread(core.accounts.revoke, key_id))


@router.post("/v1/admin/tenants/{tenant_id}/credits", response_model=BalanceResponse)
async def grant_credits(
    tenant_id: str, body: GrantRequest, core: CoreDep, admin: AdminDep
) -> BalanceResponse:
    """Add credits to the tenant's balance; answers the new balance."""
    balance = await asyncio.to_thread(grant, core.ledger, tenant_id, body.amount, "admin grant")
    return BalanceResponse(tenant_id=tenant_id, balance=balance.available, held=balance.held)


@router.put("/v1/admin/tenants/{tenant_id}/queue", response_model=TenantQueueResponse)
async def set_tenant_queue(
    tenant_id: str, body: TenantQueueRequest, core: CoreDep, admin: AdminDep
) -> TenantQueueResponse:
    """Set the tenant's weight in the models' fair queues and its own queued-images quota
    (every ingress uses them within a few seconds); answers the settings in force."""

    def store():  # noqa: ANN202
        core.ledger.tenant(tenant_id)  # 404 for an unknown tenant, before anything is stored
        return core.paid.queues.set(tenant_id, body.weight, body.max_queued_images)

    queue = await asyncio.to_thread(store)
    return TenantQueueResponse(
        tenant_id=tenant_id, weight=queue.weight, max_queued_images=queue.max_queued_images
    )


@router.get("/v1/admin/tenants/{tenant_id}/queue", response_model=TenantQueueResponse)
async def get_tenant_queue(tenant_id: str, core: CoreDep, admin: AdminDep) -> TenantQueueResponse:
    """The tenant's weight in the models' fair queues and its queued-images quota."""

    def read():  # noqa: ANN202
        core.ledger.tenant(tenant_id)
        return core.paid.queues.of(tenant_id)

    queue = await asyncio.to_thread(read)
    return TenantQueueResponse(
        tenant_id=tenant_id, weight=queue.weight, max_queued_images=queue.max_queued_images
    )
