"""HTTP routes of licenses: buy one for an asset, list and read certificates."""

from __future__ import annotations

from fastapi import APIRouter, Query

from serving.http.auth import TenantDep
from serving.http.deps import CoreDep
from serving.http.licenses.protocol import LicenseCertificate, LicenseList, PurchaseResponse
from serving.http.licenses.serving import ServingLicenses

router = APIRouter(tags=["licenses"])


@router.post("/v1/assets/{asset_id}/license", response_model=PurchaseResponse)
async def purchase_license(asset_id: str, state: CoreDep, tenant: TenantDep) -> PurchaseResponse:
    """Buy the perpetual, worldwide license of one style image (price: the catalog's
    ``[prices] license``). Idempotent: buying again answers the same certificate and
    charges nothing. Base and agentic images are free: 400 ``license_not_required``."""
    return await ServingLicenses(state).purchase(tenant, asset_id)


@router.get("/v1/licenses", response_model=LicenseList)
async def list_licenses(
    state: CoreDep,
    tenant: TenantDep,
    limit: int = Query(20, ge=1, le=100),
    after: str | None = Query(None, description="the last id of the previous page"),
) -> LicenseList:
    """The caller's license certificates, newest first."""
    return await ServingLicenses(state).list(tenant, limit, after)


@router.get("/v1/licenses/{license_id}", response_model=LicenseCertificate)
async def get_license(license_id: str, state: CoreDep, tenant: TenantDep) -> LicenseCertificate:
    """One of the caller's license certificates."""
    return await ServingLicenses(state).get(tenant, license_id)
