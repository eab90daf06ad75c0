"""Admin work: tenants, keys and grants, against the accounts and the ledger."""

from __future__ import annotations

import asyncio

from serving.core.accounts import ApiKey
from serving.core.app import KilnCore
from serving.http.admin.protocol import (
    BalanceResponse,
    CreatedKey,
    KeyInfo,
    KeyList,
    TenantResponse,
)


def key_info(key: ApiKey) -> KeyInfo:
    return KeyInfo.model_validate(key, from_attributes=True)


class ServingAdmin:
    """``/v1/admin/...``: every method runs its database work off the event loop."""

    def __init__(self, state: KilnCore):
        self.state = state

    async def create_tenant(self, name: str) -> TenantResponse:
        tenant = await asyncio.to_thread(self.state.accounts.create_tenant, name)
        return TenantResponse(id=tenant.id, name=tenant.name, created=tenant.created)

    async def create_key(self, tenant_id: str, role: str) -> CreatedKey:
        issued = await asyncio.to_thread(self.state.accounts.create_key, tenant_id, role)
        return CreatedKey(key=issued.key, **key_info(issued.record).model_dump())

    async def list_keys(self, tenant_id: str) -> KeyList:
        keys = await asyncio.to_thread(self.state.accounts.keys, tenant_id)
        return KeyList(data=[key_info(key) for key in keys])

    async def revoke_key(self, key_id: str) -> KeyInfo:
        return key_info(await asyncio.to_thread(self.state.accounts.revoke, key_id))

    async def grant(self, tenant_id: str, amount: int) -> BalanceResponse:
        ledger = self.state.ledger

        def grant() -> BalanceResponse:
            ledger.grant(tenant_id, amount, reference="admin grant")
            balance = ledger.balance(tenant_id)
            return BalanceResponse(
                tenant_id=tenant_id, balance=balance.available, held=balance.held
            )

        return await asyncio.to_thread(grant)
