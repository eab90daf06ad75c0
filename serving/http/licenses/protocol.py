"""Wire shapes of licenses: the certificate a purchase answers and the listing."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from serving.core.licenses.service import License

SCOPE = "perpetual, worldwide, per image"


class LicenseCertificate(BaseModel):
    """A license certificate: who holds which rights to which image (by its SHA-256),
    since when, bought for how many credits."""

    object: str = "license"
    id: str
    asset_id: str
    asset_sha256: str = Field(description="SHA-256 of the licensed original file")
    tenant_id: str
    tenant_name: str
    issued: datetime
    scope: str = SCOPE
    rights: list[str]
    price: int = Field(description="credits the license cost")

    @classmethod
    def of(cls, license: License, tenant_name: str) -> LicenseCertificate:
        return cls(
            id=license.id,
            asset_id=license.asset_id,
            asset_sha256=license.asset_sha256,
            tenant_id=license.tenant_id,
            tenant_name=tenant_name,
            issued=license.created,
            rights=list(license.rights),
            price=license.price,
        )


class PurchaseResponse(LicenseCertificate):
    """The certificate, and what this call charged: the price the first time, 0 after."""

    credits_charged: int


class LicenseList(BaseModel):
    object: str = "list"
    data: list[LicenseCertificate]
    has_more: bool
