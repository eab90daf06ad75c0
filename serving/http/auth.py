"""Who is calling: the tenant behind the request's ``Authorization: Bearer`` API key.

Every ``/v1`` route but signed file URLs depends on ``current_tenant`` (401 without a
live key); admin routes depend on ``admin_tenant`` (403 for a tenant's key). Keys are
looked up by hash on every request, so a revoked key stops working at once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from serving.core.errors import KilnError
from serving.http.credentials import PRINCIPAL_STATE, api_key_from, invalid_key
from serving.http.deps import CoreDep


@dataclass(frozen=True)
class Tenant:
    """The caller: its tenant id scopes styles, assets and credits; ``role`` its powers."""

    id: str
    key_id: str = ""
    role: str = "tenant"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


async def current_tenant(request: Request, state: CoreDep) -> Tenant:
    """The caller's tenant from its API key; 401 when the key is missing, unknown or revoked.

    The body guard has normally authenticated the request already (before reading its
    body) and left the principal on ``request.state``; otherwise the key is looked up here.
    """
    principal = getattr(request.state, PRINCIPAL_STATE, None)
    if principal is None:
        key = api_key_from(request.headers.get("authorization"))
        principal = await asyncio.to_thread(state.accounts.authenticate, key)
    if principal is None:
        raise invalid_key()
    return Tenant(id=principal.tenant_id, key_id=principal.key_id, role=principal.role)


# Route parameter type: ``tenant: TenantDep``.
TenantDep = Annotated[Tenant, Depends(current_tenant)]


async def admin_tenant(tenant: TenantDep) -> Tenant:
    """The caller, who must hold an admin key (403 otherwise)."""
    if not tenant.is_admin:
        raise KilnError(403, "this route needs the admin key", code="admin_required")
    return tenant


# Route parameter type of admin routes: ``admin: AdminDep``.
AdminDep = Annotated[Tenant, Depends(admin_tenant)]
