"""The asset routes' work: reads and deletes off the event loop, scoped to the caller."""

from __future__ import annotations

import asyncio

from serving.core.app import KilnCore
from serving.http.assets.protocol import AssetList, AssetObject, DeletedAsset
from serving.http.auth import Tenant


class ServingAssets:
    """``/v1/assets`` and its sub-resources."""

    def __init__(self, state: KilnCore):
        self.assets = state.assets

    async def list(self, tenant: Tenant, limit: int, after: str | None) -> AssetList:
        page, more = await asyncio.to_thread(self.assets.list, tenant.id, limit, after)
        return AssetList(data=[AssetObject.of(a) for a in page], has_more=more)

    async def get(self, tenant: Tenant, asset_id: str) -> AssetObject:
        return AssetObject.of(await asyncio.to_thread(self.assets.get, tenant.id, asset_id))

    async def preview(self, tenant: Tenant, asset_id: str) -> bytes:
        return (await asyncio.to_thread(self.assets.preview, tenant.id, asset_id))[1]

    async def original(self, tenant: Tenant, asset_id: str) -> bytes:
        return (await asyncio.to_thread(self.assets.original, tenant.id, asset_id))[1]

    async def delete(self, tenant: Tenant, asset_id: str) -> DeletedAsset:
        await asyncio.to_thread(self.assets.delete, tenant.id, asset_id)
        return DeletedAsset(id=asset_id)
