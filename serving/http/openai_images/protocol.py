"""OpenAI Images API wire format (``POST /v1/images/generations``).

Field names and response shape are OpenAI's, so the official SDK works unchanged. Kiln's
own knobs (``negative_prompt``, ``seed``, ``steps``, ``guidance``, ``scheduler``) ride
along as extra fields (the SDK's ``extra_body``). Fields OpenAI defines that have no
meaning here (``quality``, ``user``, ``style``, ``moderation``) are accepted and ignored;
ones that would change the result and that Kiln cannot honour are refused.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipelines.params import MAX_IMAGES
from serving.core.generations.orders import GenerationOrder
from serving.core.generations.params import Sampling
from serving.http.generations.protocol import SamplingFields

# OpenAI's range of ``partial_images`` (a streamed answer's previews per image).
MAX_PARTIAL_IMAGES = 3


class ImageGenerationRequest(SamplingFields):
    """OpenAI's image generation request. ``size`` is one of the model's ``"WxH"``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str
    model: str | None = Field(
        None, description="model id, or a style id (its base model); default: the catalog's first"
    )
    n: int | None = Field(1, ge=1, le=MAX_IMAGES)
    size: str | None = Field("auto", description="one of the model's sizes, or 'auto'")
    response_format: Literal["b64_json", "url"] | None = "b64_json"
    output_format: Literal["png", "jpeg", "webp"] | None = "png"
    output_compression: int | None = Field(None, ge=0, le=100)
    background: Literal["auto", "opaque"] | None = None
    stream: bool | None = Field(
        None, description="answer as Server-Sent Events (serving/http/openai_images/streaming.py)"
    )
    partial_images: int | None = Field(
        None, ge=0, le=MAX_PARTIAL_IMAGES, description="step previews per image when streamed"
    )
    quality: str | None = None
    user: str | None = None
    style: str | None = None
    moderation: str | None = None

    def to_order(self) -> GenerationOrder:
        """The request as the core takes it (``Generations.create_openai``: ``model`` may
        name a style)."""
        return GenerationOrder(
            model=self.model,
            prompt=self.prompt,
            n=self.n if self.n is not None else 1,
            size=self.size,
            sampling=streamed(self.sampling(), self.stream, self.partial_images),
            style_strength=self.style_strength,
        )


def streamed(sampling: Sampling, stream: bool | None, partial_images: int | None) -> Sampling:
    """A streamed request's sampling: its ``partial_images`` previews (0 without) spread
    over its steps; a request that does not stream keeps its own ``preview_every``."""
    if not stream:
        return sampling
    return dataclasses.replace(sampling, partial_images=partial_images or 0)


class ImageObject(BaseModel):
    """One image: ``b64_json`` or ``url``, by the request's ``response_format``, and
    Kiln's ``asset_id`` (an extra field the OpenAI SDKs keep)."""

    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None
    asset_id: str | None = None


class ImagesResponse(BaseModel):
    """OpenAI's images response."""

    created: int
    data: list[ImageObject]
    output_format: str | None = None
    size: str | None = None
