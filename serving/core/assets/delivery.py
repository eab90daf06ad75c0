"""Delivering made images: each becomes an asset (finished: marks and metadata; stored;
recorded) and the pixels and PNG bytes the answer carries (preview for style kinds,
original otherwise).

    made = [Made(pixels, generation_record(params, pixels, seed, keep, generation_id))]
    prepared = prepare_images(assets, tenant_id, made)    # blocking: files stored
    ...                                                   # rows: Assets.insert, in the
    delivered = [Delivered.of(p) for p in prepared]       # settlement's transaction
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.params import GenerationParams
from serving.core.assets.service import Asset, Assets, ImageRecord, PreparedAsset
from weights.catalog import ProviderTerms


@dataclass(frozen=True)
class Made:
    """One image a model step made, before it is finished and stored: its pixels and the
    asset row it will be stored under."""

    pixels: np.ndarray  # uint8 HxWx3
    record: ImageRecord


@dataclass(frozen=True)
class Delivered:
    """One delivered image: its asset, the PNG bytes handed out now and their pixels."""

    asset: Asset
    png: bytes
    pixels: Any  # uint8 HxWx3 (x4 with alpha) of ``png``, to re-encode without a decode

    @classmethod
    def of(cls, prepared: PreparedAsset) -> Delivered:
        finished = prepared.finished
        return cls(prepared.asset, finished.delivered, finished.delivered_pixels)


@dataclass(frozen=True)
class Keep:
    """How a generation's images are kept: their asset kind (the style's, the model's or
    the one an input's rights impose), the style, the asset they derive from and the
    provider terms of the model that makes them (its catalog entry's, required: every
    asset records them)."""

    kind: str
    style: str | None = None
    parent_id: str | None = None
    terms: ProviderTerms = field(kw_only=True)


def generation_record(
    params: GenerationParams, pixels: np.ndarray, seed: int, keep: Keep, generation_id: str
) -> ImageRecord:
    """The asset row of one image of a pipeline call ``params``; its size is the image's
    own (an edit's images come back at its input's size, not the call's work size)."""
    settings: dict[str, Any] = {
        "steps": params.steps,
        "guidance": params.guidance,
        "scheduler": params.scheduler,
        "resolution": params.resolution,
        "task": params.task.name,
        **params.task.recorded(),
    }
    return ImageRecord(
        kind=keep.kind,
        model=params.model,
        prompt=params.prompt,
        negative_prompt=params.negative_prompt or None,
        seed=seed,
        width=int(pixels.shape[1]),
        height=int(pixels.shape[0]),
        params=settings,
        style=keep.style,
        generation_id=generation_id,
        parent_id=keep.parent_id,
        terms=keep.terms,
    )


def prepare_images(assets: Assets, tenant_id: str, made: list[Made]) -> list[PreparedAsset]:
    """Finish every image of ``made`` and store its files, in order; their rows are the
    caller's to write (``Assets.insert``). Blocking."""
    return [assets.prepare(tenant_id, image.record, image.pixels) for image in made]
