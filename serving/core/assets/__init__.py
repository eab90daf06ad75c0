"""Assets: every delivered image, its files (content-addressed under KILN_HOME/assets),
its metadata row and its license state; the HTTP routes of ``/v1/assets``."""

from serving.core.assets.service import (
    LICENSE_STATES,
    Asset,
    AssetFilter,
    Assets,
    ImageRecord,
    LicenseRequired,
    UnknownAsset,
    license_required,
)
from serving.core.assets.store import BlobStore

__all__ = [
    "Asset",
    "AssetFilter",
    "Assets",
    "BlobStore",
    "ImageRecord",
    "LicenseRequired",
    "LICENSE_STATES",
    "UnknownAsset",
    "license_required",
]
