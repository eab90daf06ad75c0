"""The license routes' work, off the event loop."""

from __future__ import annotations

import asyncio

from serving.core.app import KilnCore
from serving.http.auth import Tenant
from serving.http.licenses.protocol import LicenseCertificate, LicenseList, PurchaseResponse


class ServingLicenses:
    """``POST /v1/assets/{id}/license``, ``GET /v1/licenses[/{id}]``."""

    def __init__(self, state: KilnCore):
        self.state = state

    async def purchase(self, tenant: Tenant, asset_id: str) -> PurchaseResponse:
        """Buy (or find) the caller's license for ``asset_id`` at the catalog's price."""
        price = self.state.catalog.price_of("license")
        license, charged = await asyncio.to_thread(
            self.state.licenses.purchase, tenant.id, asset_id, price
        )
        name = await self._tenant_name(tenant)
        certificate = LicenseCertificate.of(license, name)
        return PurchaseResponse(**certificate.model_dump(), credits_charged=charged)

    async def get(self, tenant: Tenant, license_id: str) -> LicenseCertificate:
        license = await asyncio.to_thread(self.state.licenses.get, tenant.id, license_id)
        return LicenseCertificate.of(license, await self._tenant_name(tenant))

    async def list(self, tenant: Tenant, limit: int, after: str | None) -> LicenseList:
        page, more = await asyncio.to_thread(self.state.licenses.list, tenant.id, limit, after)
        name = await self._tenant_name(tenant)
        return LicenseList(data=[LicenseCertificate.of(x, name) for x in page], has_more=more)

    async def _tenant_name(self, tenant: Tenant) -> str:
        return (await asyncio.to_thread(self.state.ledger.tenant, tenant.id)).name
