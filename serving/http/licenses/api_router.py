"""HTTP routes of licenses: buy one for an asset, list and read certificates."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query

from serving.core.app import KilnCore
from serving.http.auth import Tenant, TenantDep
from serving.http.deps import CoreDep
from serving.http.licenses.protocol import LicenseCertificate, LicenseList, PurchaseResponse

router = APIRouter(tags=["licenses"])


@router.post("/v1/assets/{asset_id}/license", response_model=PurchaseResponse)
async def purchase_license(asset_id: str, core: CoreDep, tenant: TenantDep) -> PurchaseResponse:
    """Buy the perpetual, worldwide license of one style image (price: the catalog's
    ``[prices] license``). Idempotent: buying again answers the same certificate and
    charges nothing. Base and agentic images are free: 400 ``license_not_required``."""
    price = core.catalog.price_of("license")
    license, charged = await asyncio.to_thread(core.licenses.purchase, tenant.id, asset_id, price)
    certificate = LicenseCertificate.of(license, await _holder(core, tenant))
    return PurchaseResponse(**certificate.model_dump(), credits_charged=charged)


@router.get("/v1/licenses", response_model=LicenseList)
async def list_licenses(
    core: CoreDep,
    tenant: TenantDep,
    limit: int = Query(20, ge=1, le=100),
    after: str | None = Query(None, description="the last id of the previous page"),
) -> LicenseList:
    """The caller's license certificates, newest first."""
    page, more = await asyncio.to_thread(core.licenses.list, tenant.id, limit, after)
    holder = await _holder(core, tenant)
    return LicenseList(data=[LicenseCertificate.of(x, holder) for x in page], has_more=more)


@router.get("/v1/licenses/{license_id}", response_model=LicenseCertificate)
async def get_license(license_id: str, core: CoreDep, tenant: TenantDep) -> LicenseCertificate:
    """One of the caller's license certificates."""
    license = await asyncio.to_thread(core.licenses.get, tenant.id, license_id)
    return LicenseCertificate.of(license, await _holder(core, tenant))


async def _holder(core: KilnCore, tenant: Tenant) -> str:
    """The name a certificate gives its holder: the caller's tenant's."""
    return (await asyncio.to_thread(core.ledger.tenant, tenant.id)).name
