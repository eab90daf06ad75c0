"""Wire shapes of the asset routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from serving.core.assets.service import Asset
from serving.core.objects import asset_object
from serving.http.models.protocol import ModelTerms

# The filter values of ``GET /v1/assets`` (the core checks them again: serving.core.assets).
AssetKind = Literal["base", "artist_style", "private_style", "agentic"]
LicenseState = Literal["free", "required", "licensed"]


class AssetLicense(BaseModel):
    """Whether the original needs a license: ``free`` (base, agentic), ``required``
    (style image, not licensed yet) or ``licensed`` (with the license's id)."""

    state: str
    license_id: str | None


class AssetObject(BaseModel):
    """A stored image and how it was made. ``preview_url`` and ``original_url`` are
    paths on this server (send the API key); the original answers 403
    ``license_required`` while ``license.state`` is ``required``."""

    object: str = "asset"
    id: str
    kind: str = Field(description="base | artist_style | private_style | agentic")
    model: str
    style: str | None
    prompt: str
    negative_prompt: str | None
    seed: int
    params: dict[str, Any]
    width: int
    height: int
    media_type: str
    bytes: int = Field(description="size of the original file")
    sha256: str = Field(description="SHA-256 of the original file, as licenses certify it")
    invisible_watermark: str | None = Field(
        description="hex payload of the invisible provenance mark; null under 256 px"
    )
    visible_watermark: bool = Field(description="the preview carries the visible mark")
    license: AssetLicense
    generation_id: str | None
    parent_id: str | None = Field(
        None, description="the asset this one was derived from (edit, variation, export)"
    )
    terms: ModelTerms | None = Field(
        description="the model provider's stated terms when it was made (not legal "
        "advice); null on assets made before Kiln recorded them"
    )
    created: datetime
    preview_url: str
    original_url: str

    @classmethod
    def of(cls, asset: Asset) -> AssetObject:
        # From the core's shape, which job results store: the two cannot drift.
        return cls.model_validate(asset_object(asset))


class AssetList(BaseModel):
    """One page of the caller's assets, newest first; pass the last id as ``after``."""

    object: str = "list"
    data: list[AssetObject]
    has_more: bool


class DeletedAsset(BaseModel):
    object: str = "asset.deleted"
    id: str
    deleted: bool = True
