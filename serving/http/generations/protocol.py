"""Wire shapes of the native ``POST /v1/generations``.

The request converts itself once into ``GenerationParams`` (``to_params``) with the
precedence request, then server settings, then the model's catalog defaults; no later
layer reads the raw request again.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipelines.params import (
    MAX_IMAGES,
    MAX_SEED,
    GenerationDefaults,
    GenerationParams,
    ParamError,
    StyleRef,
)
from serving.core.assets.delivery import Delivered
from serving.core.imaging import b64
from serving.http.image_to_prompt.protocol import ImageToPromptField
from weights.catalog import ModelSpec

# A ceiling on steps so one request cannot hold a replica for an hour.
MAX_STEPS = 200


def check_prompt(prompt: str | None, param: str, max_chars: int) -> None:
    """Reject prompts longer than the server allows (before tokenising anything)."""
    if prompt is not None and len(prompt) > max_chars:
        raise ParamError(param, f"{param} is {len(prompt)} characters; the limit is {max_chars}")


class SamplingFields(BaseModel):
    """Kiln's sampling knobs, shared by the native and the OpenAI-compatible requests."""

    negative_prompt: str | None = None
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="image i uses seed + i")
    steps: int | None = Field(None, ge=1, le=MAX_STEPS)
    guidance: float | None = Field(None, ge=0)
    scheduler: str | None = None
    style_strength: float | None = Field(
        None, ge=0, le=2, description="how strongly the style applies (default: the style's)"
    )

    def build_params(
        self,
        spec: ModelSpec,
        defaults: GenerationDefaults,
        max_prompt_chars: int,
        *,
        prompt: str,
        n: int,
        style: StyleRef | None = None,
        **call: Any,
    ) -> GenerationParams:
        """Check prompt lengths, then resolve everything once into ``GenerationParams``.

        ``call``: the size (``resolution``/``aspect_ratio``/``size``, or ``width`` and
        ``height`` for image tasks) and the task's fields (``GenerationParams.build``)."""
        check_prompt(prompt, "prompt", max_prompt_chars)
        check_prompt(self.negative_prompt, "negative_prompt", max_prompt_chars)
        return GenerationParams.build(
            spec,
            prompt=prompt,
            negative_prompt=self.negative_prompt,
            n=n,
            seed=self.seed,
            steps=self.steps,
            guidance=self.guidance,
            scheduler=self.scheduler,
            defaults=defaults,
            style=style,
            **call,
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

    def to_params(
        self,
        spec: ModelSpec,
        defaults: GenerationDefaults,
        *,
        max_prompt_chars: int,
        style: StyleRef | None = None,
        prompt: str | None = None,
        **call: Any,
    ) -> GenerationParams:
        """The resolved pipeline parameters; raises ``ParamError`` naming the bad field.

        ``style`` is the resolved ``self.style``; ``prompt`` the prompt with the style's
        trigger words, where the caller added them; ``call`` the task fields a reference
        or pins resolved to (``GenerationParams.build``)."""
        return self.build_params(
            spec,
            defaults,
            max_prompt_chars,
            prompt=self.prompt if prompt is None else prompt,
            n=self.n,
            style=style,
            resolution=self.resolution,
            aspect_ratio=self.aspect_ratio,
            **call,
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
