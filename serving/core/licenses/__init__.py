"""Per-image licenses: purchase with credits, certificates, listings."""

from serving.core.licenses.service import (
    RIGHTS,
    License,
    LicenseNotRequired,
    Licenses,
    UnknownLicense,
)

__all__ = ["RIGHTS", "License", "LicenseNotRequired", "Licenses", "UnknownLicense"]
