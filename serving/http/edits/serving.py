"""Edits: resolve the tool, the input and the model once, run on the model's deployment,
composite the original back, store the results as assets derived from the input, charge
the catalog's ``edit`` price per image.

The model: the request's ``model``; else the source asset's model where it has the tool;
else the first catalog model that has it. Instruct runs on ``instruct`` models only, the
other tools on any base model (their inpaint and img2img pipelines are derived from it).
A tool the chosen model lacks is a 400 naming the models that have it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import numpy as np

from pipelines.edit_tools import PreparedEdit, composite, erase_prompts, prepare_edit
from pipelines.params import GenerationParams, ParamError
from serving.core.app import KilnCore
from serving.core.asset_rights import Use
from serving.core.assets.delivery import Keep
from serving.core.generations.params import build_params
from serving.core.generations.styling import MODEL_ASSET_KINDS
from serving.core.image_inputs import (
    ImageSource,
    InputImage,
    check_mask_size,
    decode_b64_image,
    derived_kind,
)
from serving.core.image_to_prompt.mixing import prompt_with_extract
from serving.core.paid_images import ImageResult, Price
from serving.http.auth import Tenant
from serving.http.edits.protocol import EditRequest, EditResponse
from serving.http.generations.protocol import GeneratedImage
from weights.catalog import Catalog, ModelSpec

# Recreate's strength when the request leaves it out: keeps the layout, changes the rest.
RECREATE_STRENGTH = 0.6


def has_tool(spec: ModelSpec, tool: str, masked: bool = True) -> bool:
    """Instruct needs an instruct model; replace, recreate and erase run on base models,
    and (masked) on dedicated inpaint models."""
    if tool == "instruct":
        return spec.kind == "instruct"
    return spec.kind == "base" or (spec.kind == "inpaint" and masked)


def inpaint_model(catalog: Catalog, spec: ModelSpec, task: str) -> ModelSpec:
    """The model that runs an edit's ``task``: a base model's dedicated ``inpaint_model``
    for inpainting, where the catalog lists one, else the model itself."""
    target = spec.extra.get("inpaint_model")
    if task == "inpaint" and spec.kind == "base" and target is not None:
        return catalog.get(target)
    return spec


def choose_model(
    catalog: Catalog,
    tool: str,
    requested: str | None,
    source_model: str | None,
    masked: bool = True,
) -> ModelSpec:
    """The model an edit runs on (see the module docstring); ``ParamError`` when none fits."""
    having = [spec.id for spec in catalog if has_tool(spec, tool, masked)]
    if requested is not None:
        spec = catalog.get(requested)
        if not has_tool(spec, tool, masked):
            raise ParamError(
                "model",
                f"model {spec.id!r} has no {tool}; models that have it: "
                f"{', '.join(having) or 'none installed'}",
            )
        return spec
    if source_model in catalog and has_tool(catalog.get(source_model), tool, masked):
        return catalog.get(source_model)
    if not having:
        raise ParamError("tool", f"no installed model has {tool}")
    # Base models first: a dedicated inpaint model is reached through its base model.
    having.sort(key=lambda model_id: catalog.get(model_id).kind != "base")
    return catalog.get(having[0])


def decode_mask(
    state: KilnCore, text: str, size: tuple[int, int], param: str = "mask"
) -> np.ndarray:
    """A native mask (white = edit) as uint8 HxW; it must have the image's size."""
    mask = decode_b64_image(text, param, state.settings)
    check_mask_size(mask.size, size, param)
    return np.asarray(mask.convert("L"))


def edit_task(tool: str, has_mask: bool) -> str:
    """The pipeline task of an edit tool (shared by the native and the OpenAI route)."""
    if tool == "instruct":
        return "instruct"
    if tool == "recreate" and not has_mask:
        return "image_to_image"
    return "inpaint"


def edit_strength(tool: str, requested: float | None) -> float:
    """The request's strength, else recreate's default (keeps the layout), else 1."""
    if requested is not None:
        return requested
    return RECREATE_STRENGTH if tool == "recreate" else 1.0


async def prepare_for(
    spec: ModelSpec, pixels: np.ndarray, mask: np.ndarray | None, erase: bool = False
) -> PreparedEdit:
    """``prepare_edit`` at ``spec``'s grid and largest tier, off the event loop."""
    return await asyncio.to_thread(
        prepare_edit,
        pixels,
        mask,
        multiple=spec.family_spec.size_multiple,
        max_side=max(spec.resolutions.values()),
        erase=erase,
    )


class ServingEdits:
    """``POST /v1/edits``."""

    def __init__(self, state: KilnCore):
        self.state = state

    async def create(
        self, request: EditRequest, tenant: Tenant, request_id: str | None = None
    ) -> EditResponse:
        state = self.state
        request.check_tool()
        source = await state.inputs.load(
            tenant.id, ImageSource(request.image, request.asset_id), use=Use.DERIVE
        )
        mask = None
        if request.mask is not None:
            mask = await asyncio.to_thread(decode_mask, state, request.mask, source.size)
        spec = choose_model(
            state.catalog,
            request.tool,
            request.model,
            source.source.model if source.source is not None else None,
            masked=mask is not None,
        )
        spec = inpaint_model(state.catalog, spec, edit_task(request.tool, mask is not None))
        original = source.pixels
        prepared = await prepare_for(spec, original, mask, erase=request.tool == "erase")
        if request.image_to_prompt is not None:
            # Resolved (and refused, when bad) before anything is charged; free inside an
            # edit as inside a generation (serving/core/image_to_prompt/mixing.py).
            prompt = await prompt_with_extract(
                state.image_to_prompt,
                tenant.id,
                request.prompt,
                request.image_to_prompt.to_extract(),
            )
            request = request.model_copy(update={"prompt": prompt})
        params = self.params(request, spec, prepared)
        result = await run_image_task(
            state, tenant, spec, params, request_id, source, original, prepared, request.tool
        )
        return EditResponse(
            id=result.id,
            created=int(time.time()),
            model=spec.id,
            tool=request.tool,
            data=[GeneratedImage.of(d) for d in result.images],
            credits_charged=result.credits_charged,
            timings=result.timings,
        )

    def params(
        self, request: EditRequest, spec: ModelSpec, prepared: PreparedEdit
    ) -> GenerationParams:
        """The pipeline call of an edit, resolved once."""
        settings = self.state.settings
        tool = request.tool
        task = edit_task(tool, prepared.mask is not None)
        prompt = request.prompt or ""
        negative = request.negative_prompt
        if tool == "instruct":
            prompt = request.instruction or ""
        elif tool == "erase":
            prompt, negative = erase_prompts(request.objects, negative)
        strength = edit_strength(tool, request.strength)
        return build_params(
            spec,
            settings,
            replace(request.sampling(), negative_prompt=negative),
            prompt=prompt,
            n=request.n,
            task=task,
            strength=strength,
            image_guidance=request.image_guidance if tool == "instruct" else None,
            **prepared.call_fields(),
        )


async def run_image_task(
    state: KilnCore,
    tenant: Tenant,
    spec: ModelSpec,
    params: GenerationParams,
    request_id: str | None,
    source: InputImage | None,
    original: np.ndarray,
    prepared: PreparedEdit,
    operation: str,
) -> ImageResult[None]:
    """The paid path of an edit or variation: the ``operation``'s price per image (the
    tool's: instruct, replace, recreate, erase, variation), the input's
    rights carried to the results (``source``: the input, None for a bare upload), each
    result composited over the original."""
    asset = source.source if source is not None else None
    sources = [source] if source is not None else []
    keep = Keep(
        kind=derived_kind(sources, MODEL_ASSET_KINDS[spec.kind]),
        style=asset.style if asset is not None else None,
        parent_id=asset.id if asset is not None else None,
    )
    price = Price(state.catalog.price_of(operation), params.n)
    order = state.paid.generation(
        params, price, keep, finish=lambda image: composite(original, image, prepared)
    )
    return await state.paid.images(tenant.id, order, request_id)
