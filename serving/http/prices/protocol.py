"""Wire shape of ``GET /v1/prices``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class PriceList(BaseModel):
    """Credits of every operation that is not a text-to-image generation (those are per
    model and resolution: ``GET /v1/models`` ``prices``)."""

    object: Literal["prices"] = "prices"
    operations: dict[str, int] = Field(
        description="credits by operation: license, upscale, remove_background, vectorize, "
        "agentic (per generation), instruct, replace, ... (the catalog's [prices])"
    )
