"""Native generation: resolve, run on the model's deployment, store assets, charge, answer."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.edit_tools import cover
from pipelines.output import GenerationOutput
from pipelines.params import (
    GenerationParams,
    ImageData,
    ParamError,
    resolve_size,
)
from serving.core.app import KilnCore
from serving.core.asset_rights import Use
from serving.core.assets.delivery import Delivered, deliver_images
from serving.core.credits.charging import Charge, reserve, unit_price
from serving.core.generations.styling import ChosenStyle, choose_style, find_style
from serving.core.image_inputs import InputImage, derived_kind, load_image_input
from serving.core.image_to_prompt.mixing import prompt_with_extract
from serving.core.pins.conditioning import adapter_conditioning, combine, reference_conditioning
from serving.http.auth import Tenant
from serving.http.generations.protocol import GeneratedImage, GenerationRequest, GenerationResponse
from weights.catalog import ModelSpec


@dataclass
class Generated:
    """A finished generation: the pipeline's output and the ingress's own timings."""

    output: GenerationOutput
    started: float
    timings: dict[str, float]
    generation_id: str = ""


async def generate(state: KilnCore, params: GenerationParams) -> Generated:
    """Run ``params`` on its model and count the delivered images."""
    started = time.perf_counter()
    output = await state.models.generate(params)
    if len(output.images) != params.n:
        raise RuntimeError(f"engine returned {len(output.images)} images for n={params.n}")
    state.metrics.images.labels(params.model).inc(len(output.images))
    timings = {k: float(v) for k, v in output.timings.items()}
    timings["generate"] = time.perf_counter() - started
    return Generated(output, started, timings)


# Asset kind of a model's own images: instruct-edit models make base-kind images.
MODEL_ASSET_KINDS = {"base": "base", "instruct": "base", "inpaint": "base"}


def asset_kind(spec: ModelSpec, style: ChosenStyle | None) -> str:
    """The asset kind of a generation: the style's (watermarked, licensed) or the model's."""
    return style.record.asset_kind if style is not None else MODEL_ASSET_KINDS[spec.kind]


async def generate_and_deliver(
    state: KilnCore,
    tenant: Tenant,
    spec: ModelSpec,
    params: GenerationParams,
    reference: str | None,
    style: ChosenStyle | None = None,
    *,
    unit: int | None = None,
    kind: str | None = None,
    style_id: str | None = None,
    parent_id: str | None = None,
    finish: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[Generated, list[Delivered], Charge]:
    """The whole paid path of a generation: cap slot, reservation, pipeline, one asset per
    image, capture of the delivered images (the rest released).

    Image tasks pass their own price (``unit`` per image), the asset ``kind`` their input
    gives (a style image's edit stays style-kind), the ``parent_id`` asset and ``finish``,
    applied to each image before it is stored (an edit's composite)."""
    generation_id = f"gen_{uuid.uuid4().hex}"
    unit = unit_price(spec, params.resolution) if unit is None else unit
    kind = kind or asset_kind(spec, style)
    if style_id is None and style is not None:
        style_id = style.record.id
    async with (
        state.limiter.slot(tenant.id),
        reserve(state.ledger, tenant.id, unit, params.n, reference) as charge,
    ):
        done = await generate(state, params)
        t0 = time.perf_counter()
        output = done.output
        if finish is not None:
            images = await asyncio.to_thread(lambda: [finish(image) for image in output.images])
            output = GenerationOutput(images, output.seeds, output.timings)
        delivered = await asyncio.to_thread(
            deliver_images,
            state.assets,
            tenant.id,
            params,
            output,
            kind=kind,
            generation_id=generation_id,
            style=style_id,
            parent_id=parent_id,
        )
        done.timings["deliver"] = time.perf_counter() - t0
        await charge.capture(len(delivered))
    state.retention.maybe_start()
    done.timings["server_total"] = time.perf_counter() - done.started
    done.generation_id = generation_id
    return done, delivered, charge


@dataclass
class GuidanceInputs:
    """What a generation's reference image and pins resolved to: the task fields of the
    call, and the input images whose rights the results inherit."""

    call: dict[str, Any] = field(default_factory=dict)
    reference: InputImage | None = None

    @property
    def inputs(self) -> list[InputImage]:
        return [self.reference] if self.reference is not None else []


async def guidance_inputs(
    state: KilnCore, tenant: Tenant, spec: ModelSpec, request: GenerationRequest
) -> GuidanceInputs:
    """Resolve ``reference`` and ``pins`` once: img2img from the reference (cover-cropped
    to the generation's size), or IP-Adapter conditioning from the reference and the pins
    (one adapter call; pins' scales per kind, the reference's its own)."""
    out = GuidanceInputs()
    reference_adapter = None
    reference = request.reference
    if reference is not None:
        out.reference = await load_image_input(
            state,
            tenant,
            image=reference.image,
            asset_id=reference.asset_id,
            use=Use.REFERENCE,
            param="reference",
            asset_param="reference.asset_id",
        )
        pixels = out.reference.pixels
        if reference.mode == "img2img":
            _, width, height = resolve_size(spec, request.resolution, request.aspect_ratio)
            init = await asyncio.to_thread(cover, pixels, (width, height))
            out.call.update(
                task="image_to_image", init_image=ImageData(init), strength=reference.strength
            )
        else:
            reference_adapter = await reference_conditioning(state, spec, pixels, reference.scale)
    pinned = await adapter_conditioning(state, tenant, spec, list(request.pins or []))
    adapter = combine(reference_adapter, pinned)
    if adapter is not None:
        out.call["adapter"] = adapter
    return out


class ServingGenerations:
    """``POST /v1/generations`` against the model handles."""

    def __init__(self, state: KilnCore):
        self.state = state

    async def create(
        self, request: GenerationRequest, tenant: Tenant, request_id: str | None = None
    ) -> GenerationResponse:
        """Generate ``request.n`` images, store them as assets, charge them, answer them as
        base64 PNG (the preview for style images)."""
        state = self.state
        settings = state.settings
        spec = state.catalog.get(request.model)
        style = None
        if request.style is not None:
            record = await find_style(state, tenant, request.style)
            style = choose_style(state, record, request.style_strength, spec)
        elif request.style_strength is not None:
            raise ParamError("style_strength", "style_strength needs a style")
        guidance = await guidance_inputs(state, tenant, spec, request)
        # The user's prompt with an image's extract mixed in (free: image_to_prompt/mixing).
        prompt = await prompt_with_extract(state, tenant, request.prompt, request.image_to_prompt)
        params = request.to_params(
            spec,
            settings.generation_defaults,
            max_prompt_chars=settings.max_prompt_chars,
            style=style.ref if style else None,
            prompt=style.prompt(prompt) if style else prompt,
            **guidance.call,
        )
        source = guidance.reference.source if guidance.reference else None
        done, delivered, charge = await generate_and_deliver(
            state,
            tenant,
            spec,
            params,
            request_id,
            style,
            kind=derived_kind(guidance.inputs, asset_kind(spec, style)),
            parent_id=source.id if source is not None else None,
        )
        data = [GeneratedImage.of(d) for d in delivered]
        return GenerationResponse(
            id=done.generation_id,
            created=int(time.time()),
            model=params.model,
            data=data,
            credits_charged=charge.charged,
            timings=done.timings,
        )
