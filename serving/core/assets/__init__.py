"""Assets: every delivered image, its files (content-addressed under KILN_HOME/assets),
its metadata row and its license state; the HTTP routes of ``/v1/assets``."""

from serving.core.assets.service import (
    Asset,
    Assets,
    ImageRecord,
    LicenseRequired,
    UnknownAsset,
    license_required,
)
from serving.core.assets.store import BlobStore

__all__ = [
    "Asset",
    "Assets",
    "BlobStore",
    "ImageRecord",
    "LicenseRequired",
    "UnknownAsset",
    "license_required",
]
