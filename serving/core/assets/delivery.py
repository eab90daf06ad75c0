"""Delivering a generation's images: each becomes an asset (finished, stored, recorded)
and the bytes the response carries (preview for style kinds, original otherwise)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.output import GenerationOutput
from pipelines.params import GenerationParams
from serving.core.assets.service import Asset, Assets, ImageRecord


@dataclass(frozen=True)
class Delivered:
    """One delivered image: its asset, the PNG bytes handed out now and their pixels."""

    asset: Asset
    png: bytes
    pixels: Any  # uint8 HxWx3 of ``png``, to re-encode in another format without a decode


def deliver_images(
    assets: Assets,
    tenant_id: str,
    params: GenerationParams,
    output: GenerationOutput,
    *,
    kind: str,
    generation_id: str,
    style: str | None = None,
    parent_id: str | None = None,
) -> list[Delivered]:
    """Store every image of ``output`` as an asset of ``tenant_id``. Blocking."""
    settings = {
        "steps": params.steps,
        "guidance": params.guidance,
        "scheduler": params.scheduler,
        "resolution": params.resolution,
        "task": params.task,
    }
    if params.task != "text_to_image":
        settings["strength"] = params.strength
    if params.image_guidance is not None:
        settings["image_guidance"] = params.image_guidance
    delivered = []
    for pixels, seed in zip(output.images, output.seeds, strict=True):
        record = ImageRecord(
            kind=kind,
            model=params.model,
            prompt=params.prompt,
            negative_prompt=params.negative_prompt or None,
            seed=seed,
            # An edit's images come back at its input's size, not the call's work size.
            width=int(pixels.shape[1]),
            height=int(pixels.shape[0]),
            params=settings,
            style=style,
            generation_id=generation_id,
            parent_id=parent_id,
        )
        asset, finished = assets.create(tenant_id, record, pixels)
        delivered.append(Delivered(asset, finished.delivered, finished.delivered_pixels))
    return delivered
