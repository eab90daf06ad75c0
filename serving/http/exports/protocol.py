"""Wire shapes of the export routes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from serving.http.assets.protocol import AssetObject


class UpscaleRequest(BaseModel):
    """``POST /v1/assets/{id}/upscale``: exactly one of ``long_side`` and ``scale``."""

    model_config = ConfigDict(extra="forbid")

    long_side: int | None = Field(None, description="target long side in px, 1-7680 (8K UHD)")
    scale: float | None = Field(None, description="target as a multiple of the long side")
    method: str = Field(
        "model",
        description='"model": the installed upscaler (tiled, chained, one final resample); '
        '"lanczos": a plain resample, asked for explicitly',
    )


class RemoveBackgroundRequest(BaseModel):
    """``POST /v1/assets/{id}/remove-background`` takes no options yet."""

    model_config = ConfigDict(extra="forbid")


class ExportResponse(BaseModel):
    """A finished export: the derived asset (its ``parent_id`` is the source)."""

    object: str = "asset.export"
    operation: str = Field(description="upscale | remove_background")
    asset: AssetObject
    credits_charged: int
