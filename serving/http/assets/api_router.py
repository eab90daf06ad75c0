"""HTTP routes of the caller's assets: list, metadata, preview, original, delete."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Response

from serving.core.assets import AssetFilter
from serving.http.assets.protocol import (
    AssetKind,
    AssetList,
    AssetObject,
    DeletedAsset,
    LicenseState,
)
from serving.http.auth import TenantDep
from serving.http.deps import CoreDep

router = APIRouter(tags=["assets"])

PNG = {200: {"content": {"image/png": {}}}}


def _png(data: bytes, filename: str | None = None) -> Response:
    # private: a tenant's image; shared caches must not keep it.
    headers = {"cache-control": "private"}
    if filename:
        headers["content-disposition"] = f'attachment; filename="{filename}"'
    return Response(data, media_type="image/png", headers=headers)


@router.get("/v1/assets", response_model=AssetList)
async def list_assets(
    core: CoreDep,
    tenant: TenantDep,
    limit: int = Query(20, ge=1, le=100),
    after: str | None = Query(None, description="the last id of the previous page"),
    kind: Annotated[AssetKind | None, Query(description="only assets of this kind")] = None,
    model: Annotated[str | None, Query(description="only assets made by this model id")] = None,
    license: Annotated[
        LicenseState | None,
        Query(description="only assets in this license state (as ``license.state``)"),
    ] = None,
) -> AssetList:
    """The caller's images, newest first; ``kind``, ``model`` and ``license`` narrow the
    list (together: all must match) and ``after`` pages through the narrowed list."""
    where = AssetFilter(kind=kind, model=model, license=license)
    page, more = await asyncio.to_thread(core.assets.list, tenant.id, limit, after, where)
    return AssetList(data=[AssetObject.of(a) for a in page], has_more=more)


@router.get("/v1/assets/{asset_id}", response_model=AssetObject)
async def get_asset(asset_id: str, core: CoreDep, tenant: TenantDep) -> AssetObject:
    """One of the caller's images: how it was made, its license state, its files."""
    return AssetObject.of(await asyncio.to_thread(core.assets.get, tenant.id, asset_id))


@router.get("/v1/assets/{asset_id}/preview", response_class=Response, responses=PNG)
async def get_preview(asset_id: str, core: CoreDep, tenant: TenantDep) -> Response:
    """The preview: under a visible watermark for style images, else the original."""
    _, data = await asyncio.to_thread(core.assets.preview, tenant.id, asset_id)
    return _png(data)


@router.get("/v1/assets/{asset_id}/original", response_class=Response, responses=PNG)
async def get_original(asset_id: str, core: CoreDep, tenant: TenantDep) -> Response:
    """The original PNG; 403 ``license_required`` for a style image not licensed yet."""
    _, data = await asyncio.to_thread(core.assets.original, tenant.id, asset_id)
    return _png(data, f"{asset_id}.png")


@router.delete("/v1/assets/{asset_id}", response_model=DeletedAsset)
async def delete_asset(asset_id: str, core: CoreDep, tenant: TenantDep) -> DeletedAsset:
    """Delete the image and its files (the ledger and any license keep their records)."""
    await asyncio.to_thread(core.assets.delete, tenant.id, asset_id)
    return DeletedAsset(id=asset_id)
