"""HTTP routes of the admin: tenants, keys, credit grants. All need the admin key."""

from __future__ import annotations

from fastapi import APIRouter

from serving.http.admin.protocol import (
    BalanceResponse,
    CreatedKey,
    CreateKeyRequest,
    CreateTenantRequest,
    GrantRequest,
    KeyInfo,
    KeyList,
    TenantResponse,
)
from serving.http.admin.serving import ServingAdmin
from serving.http.auth import AdminDep
from serving.http.deps import CoreDep

router = APIRouter(tags=["admin"])


@router.post("/v1/admin/tenants", response_model=TenantResponse, status_code=201)
async def create_tenant(
    body: CreateTenantRequest, state: CoreDep, admin: AdminDep
) -> TenantResponse:
    """A new tenant with no credits and no keys."""
    return await ServingAdmin(state).create_tenant(body.name)


@router.post("/v1/admin/tenants/{tenant_id}/keys", response_model=CreatedKey, status_code=201)
async def create_key(
    tenant_id: str, state: CoreDep, admin: AdminDep, body: CreateKeyRequest | None = None
) -> CreatedKey:
    """A new API key for the tenant, shown this once."""
    role = body.role if body is not None else "tenant"
    return await ServingAdmin(state).create_key(tenant_id, role)


@router.get("/v1/admin/tenants/{tenant_id}/keys", response_model=KeyList)
async def list_keys(tenant_id: str, state: CoreDep, admin: AdminDep) -> KeyList:
    """The tenant's keys by prefix (revoked ones say when)."""
    return await ServingAdmin(state).list_keys(tenant_id)


@router.delete("/v1/admin/keys/{key_id}", response_model=KeyInfo)
async def revoke_key(key_id: str, state: CoreDep, admin: AdminDep) -> KeyInfo:
    """Revoke a key: it answers 401 from now on."""
    return await ServingAdmin(state).revoke_key(key_id)


@router.post("/v1/admin/tenants/{tenant_id}/credits", response_model=BalanceResponse)
async def grant_credits(
    tenant_id: str, body: GrantRequest, state: CoreDep, admin: AdminDep
) -> BalanceResponse:
    """Add credits to the tenant's balance; answers the new balance."""
    return await ServingAdmin(state).grant(tenant_id, body.amount)
