"""The objects the API shows of the core's records, as JSON-ready dicts.

A job's result is stored as JSON and answered as it is by ``GET /v1/jobs/{id}``: an
upscale job's ``asset``, a training's ``style``. They must read exactly as the same
record does on its own route, so the shapes are built here, in the core, and the HTTP
wire models (``AssetObject.of``, ``StyleObject.of``) are built from the same functions:
the two cannot drift. Timestamps are written as pydantic writes them (ISO 8601, ``Z``
for UTC).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from serving.core.assets.service import Asset
from styles.record import StyleRecord


def timestamp(value: datetime) -> str:
    """``value`` in ISO 8601 as the API writes it: ``Z`` for UTC, as pydantic does."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def asset_object(asset: Asset) -> dict[str, Any]:
    """The asset as ``GET /v1/assets/{id}`` shows it. ``preview_url`` and
    ``original_url`` are paths on this server; the original answers 403
    ``license_required`` while ``license.state`` is ``required``."""
    return {
        "object": "asset",
        "id": asset.id,
        "kind": asset.kind,
        "model": asset.model,
        "style": asset.style,
        "prompt": asset.prompt,
        "negative_prompt": asset.negative_prompt,
        "seed": asset.seed,
        "params": dict(asset.params),
        "width": asset.width,
        "height": asset.height,
        "media_type": asset.media_type,
        "bytes": asset.bytes,
        "sha256": asset.sha256,
        "invisible_watermark": asset.invisible_watermark,
        "visible_watermark": asset.license_required,
        "license": {"state": asset.license_state, "license_id": asset.license_id},
        "generation_id": asset.generation_id,
        "parent_id": asset.parent_id,
        "terms": asset.terms.as_dict() if asset.terms is not None else None,
        "created": timestamp(asset.created),
        "preview_url": f"/v1/assets/{asset.id}/preview",
        "original_url": f"/v1/assets/{asset.id}/original",
    }


def style_object(record: StyleRecord) -> dict[str, Any]:
    """The style as ``GET /v1/styles/{id}`` shows it."""
    return {
        "object": "style",
        "id": record.id,
        "name": record.name,
        "kind": record.kind,
        "owner": record.owner,
        "base_model": record.base_model,
        "family": record.family,
        "rank": record.rank,
        "trigger_words": list(record.trigger_words),
        "default_strength": float(record.default_strength),
        "sha256": record.sha256,
        "created": timestamp(record.created),
    }
