"""Wire shapes of the native ``POST /v1/generations``.

The request converts itself once into the core's ``GenerationOrder`` (``to_order``); the
core resolves it into pipeline parameters with the precedence request, then server
settings, then the model's catalog defaults, and no later layer reads the raw request
again. ``GenerationResponse.of`` encodes the core's result (base64 PNG).
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipelines.params import MAX_IMAGES, MAX_SEED
from pipelines.previews import MAX_PREVIEW_EVERY
from serving.core.assets.delivery import Delivered
from serving.core.generations.orders import GenerationOrder, ReferenceOrder
from serving.core.generations.params import MAX_STEPS, Sampling
from serving.core.generations.service import Generation
from serving.core.image_inputs import ImageSource
from serving.core.imaging import b64
from serving.http.image_to_prompt.protocol import ImageToPromptField
from serving.http.priority import PriorityField


class SamplingFields(PriorityField):
    """Kiln's sampling knobs, shared by the native and the OpenAI-compatible requests
    (with the fair queue's ``priority``)."""

    negative_prompt: str | None = None
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="image i uses seed + i")
    steps: int | None = Field(None, ge=1, le=MAX_STEPS)
    guidance: float | None = Field(None, ge=0)
    scheduler: str | None = None
    style_strength: float | None = Field(
        None, ge=0, le=2, description="how strongly the style applies (default: the style's)"
    )
    preview_every: int | None = Field(
        None,
        ge=0,
        le=MAX_PREVIEW_EVERY,
        description="a step preview every this many steps in the job's events (0: none; "
        "default: the server's KILN_PREVIEW_EVERY)",
    )

    def sampling(self) -> Sampling:
        """The knobs as the core takes them."""
        return Sampling(
            negative_prompt=self.negative_prompt,
            seed=self.seed,
            steps=self.steps,
            guidance=self.guidance,
            scheduler=self.scheduler,
            preview_every=self.preview_every,
        )


class ReferenceImage(BaseModel):
    """A reference image that guides a generation: ``img2img`` starts from it at
    ``strength`` (0 keeps it, 1 ignores it); ``ip_adapter`` (where the model's family has
    an IP-Adapter installed) steers by its look at ``scale``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    image: str | None = Field(None, description="base64 image (or asset_id)")
    asset_id: str | None = Field(None, description="one of your assets (or image)")
    mode: Literal["img2img", "ip_adapter"] = "img2img"
    strength: float = Field(0.6, gt=0, le=1, description="img2img: how much may change")
    scale: float = Field(0.6, ge=0, le=2, description="ip_adapter: how strongly it steers")

    def to_order(self) -> ReferenceOrder:
        return ReferenceOrder(
            ImageSource(self.image, self.asset_id), self.mode, self.strength, self.scale
        )


# Most pins one generation may carry.
MAX_PINS = 4


class GenerationRequest(SamplingFields):
    """Text-to-image with Kiln's field names. Unknown fields are an error, not ignored."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(description="model id from GET /v1/models")
    prompt: str | None = Field(
        None, description="the prompt; optional with image_to_prompt (then the extract)"
    )
    n: int = Field(1, ge=1, le=MAX_IMAGES, description="images to generate")
    resolution: str | None = Field(None, description="one of the model's resolution tiers")
    aspect_ratio: str | None = Field(None, description="one of the model's aspect ratios")
    style: str | None = Field(None, description="a style id from GET /v1/styles")
    reference: ReferenceImage | None = None
    pins: list[str] | None = Field(
        None, max_length=MAX_PINS, description="character/product pin ids (POST /v1/pins)"
    )
    image_to_prompt: ImageToPromptField | None = Field(
        None, description="an image whose extract joins the prompt (the user's words win)"
    )

    def to_order(self) -> GenerationOrder:
        """The request as the core takes it."""
        return GenerationOrder(
            model=self.model,
            prompt=self.prompt,
            n=self.n,
            resolution=self.resolution,
            aspect_ratio=self.aspect_ratio,
            sampling=self.sampling(),
            style=self.style,
            style_strength=self.style_strength,
            reference=self.reference.to_order() if self.reference else None,
            pins=tuple(self.pins or ()),
            image_to_prompt=self.image_to_prompt.to_extract() if self.image_to_prompt else None,
        )


class GeneratedImage(BaseModel):
    """One image: its asset id (``GET /v1/assets/{asset_id}``), PNG as base64, the seed
    that reproduces it alone, its size. For style images the PNG is the watermarked
    preview (``watermarked``) and the original waits for a license (``license``)."""

    asset_id: str
    b64_json: str
    seed: int
    width: int
    height: int
    watermarked: bool = Field(description="the PNG is the preview under a visible mark")
    license: str = Field(description="free | required | licensed")

    @classmethod
    def of(cls, delivered: Delivered) -> GeneratedImage:
        asset = delivered.asset
        return cls(
            asset_id=asset.id,
            b64_json=b64(delivered.png),
            seed=asset.seed,
            width=asset.width,
            height=asset.height,
            watermarked=asset.license_required,
            license=asset.license_state,
        )


class GenerationResponse(BaseModel):
    """The images of one request, in order, what they cost, and where the time went
    (seconds).

    ``timings`` holds the pipeline's own phases plus ``batch_images`` (images in the
    shared pipeline call this request rode in), ``deliver`` (watermarking, encoding and
    storing the assets) and ``server_total``.
    """

    id: str = Field(description="the generation's id; its assets carry it as generation_id")
    object: str = "generation"
    created: int
    model: str
    data: list[GeneratedImage]
    credits_charged: int = Field(description="credits spent: price per image × images")
    timings: dict[str, float]

    @classmethod
    def of(cls, result: Generation) -> GenerationResponse:
        return cls(
            id=result.id,
            created=int(time.time()),
            model=result.model,
            data=[GeneratedImage.of(d) for d in result.images],
            credits_charged=result.credits_charged,
            timings=result.timings,
        )
