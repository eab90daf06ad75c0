"""What a generation's reference image and pins resolve to: img2img from the reference
(cover-cropped to the generation's size), or IP-Adapter conditioning from the reference
and the pins (one adapter call; pins' scales per kind, the reference's its own); on a
model that takes pins' pictures (FLUX), the pictures as its image input, on the model
they run on (``serving.core.generations.pinned``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from pipelines.edit_tools import cover
from pipelines.params import ImageData, resolve_size
from pipelines.tasks import ImageToImage
from serving.core.asset_rights import Use
from serving.core.generations.orders import GenerationOrder
from serving.core.generations.pinned import pinned_call
from serving.core.image_inputs import ImageInputs, InputImage
from serving.core.pins.conditioning import Conditioning, combine
from serving.core.pins.pinning import Pinning
from weights.catalog import ModelSpec


@dataclass
class GuidanceInputs:
    """The task fields of the pipeline call, and the input image whose rights the
    results inherit."""

    call: dict[str, Any] = field(default_factory=dict)
    reference: InputImage | None = None
    # The model the call runs on where it is not the one asked for (pins on FLUX.1 run
    # on its Kontext sibling); None: the one asked for.
    runs_on: ModelSpec | None = None

    @property
    def inputs(self) -> list[InputImage]:
        return [self.reference] if self.reference is not None else []


async def guidance_inputs(
    inputs: ImageInputs,
    conditioning: Conditioning,
    pinning: Pinning,
    tenant_id: str,
    spec: ModelSpec,
    order: GenerationOrder,
) -> GuidanceInputs:
    """Resolve ``order.reference`` and ``order.pins`` once (see the module docstring)."""
    pinned = await pinned_call(pinning, conditioning.catalog, tenant_id, spec, order)
    if pinned is not None:  # no reference beside them (check_pinned)
        runs_on = pinned.spec if pinned.spec.id != spec.id else None
        return GuidanceInputs(call=dict(pinned.call), runs_on=runs_on)
    out = GuidanceInputs()
    reference_adapter = None
    reference = order.reference
    if reference is not None:
        out.reference = await inputs.load(
            tenant_id,
            reference.source,
            use=Use.REFERENCE,
            param="reference",
            asset_param="reference.asset_id",
        )
        pixels = out.reference.pixels
        if reference.mode == "img2img":
            _, width, height = resolve_size(spec, order.resolution, order.aspect_ratio)
            init = await asyncio.to_thread(cover, pixels, (width, height))
            out.call["task"] = ImageToImage(ImageData(init), reference.strength)
        else:
            reference_adapter = await conditioning.reference(spec, pixels, reference.scale)
    pinned = await conditioning.pins(tenant_id, spec, list(order.pins))
    adapter = combine(reference_adapter, pinned)
    if adapter is not None:
        out.call["adapter"] = adapter
    return out
