"""Edits, the use case: ``POST /v1/edits`` and batch edit lines (``create``), OpenAI's
``POST /v1/images/edits`` (``create_openai``) and ``/v1/images/variations``
(``variation``).

    result = await core.edits.create(tenant_id, EditOrder(tool="erase", ...), request_id)

Each resolves the tool, the input and the model once (``serving.core.edits.tools``,
``.openai``), checks everything before credits are held, then runs through the one paid
path (``serving.core.paid_images``) at the catalog's price of its tool per image, each
result composited over the original (outside the feathered mask it keeps the input's
pixels exactly) and stored as an asset derived from the input: an edit of a style image
is a style image (``asset_rights``: ``Use.DERIVE``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image

from pipelines.edit_tools import PreparedEdit, composite, mask_from_alpha
from pipelines.families import family_of
from pipelines.params import AdapterConditioning, GenerationParams, ParamError
from pipelines.task import Task
from pipelines.tasks.instruct import check_instruct
from serving.core.asset_rights import Use
from serving.core.assets.delivery import Keep
from serving.core.edits.openai import (
    REFERENCE_SCALE,
    VARIATION_STRENGTH,
    ImageCall,
    edit_call,
    fit_to_size,
    openai_model,
)
from serving.core.edits.orders import EditOrder, ImageUpload, OpenAIEditOrder, VariationOrder
from serving.core.edits.tools import (
    choose_model,
    decode_mask,
    edit_strength,
    edit_task,
    erase_prompts_for,
    inpaint_model,
    prepare_for,
)
from serving.core.features import require_feature
from serving.core.generations.params import Sampling, build_params, check_prompt
from serving.core.generations.styling import MODEL_ASSET_KINDS
from serving.core.image_inputs import (
    ImageInputs,
    InputImage,
    check_image_bytes,
    check_mask_size,
    decode_image,
    derived_kind,
)
from serving.core.image_to_prompt.mixing import prompt_with_extract
from serving.core.image_to_prompt.service import ImageToPrompt
from serving.core.paid_images import ImageResult, PaidImages, Price
from serving.core.pins.conditioning import Conditioning, combine, ip_adapter_for
from serving.core.settings import Settings
from weights.catalog import Catalog, ModelKind, ModelSpec

Edit = ImageResult[None]


def edit_params(
    spec: ModelSpec, settings: Settings, order: EditOrder, prepared: PreparedEdit
) -> GenerationParams:
    """The pipeline call of a native edit, resolved once."""
    tool = order.tool
    prompt = order.prompt or ""
    negative = order.sampling.negative_prompt
    if tool == "instruct":
        prompt = order.instruction or ""
        check_instruct(family_of(spec.family), order.image_guidance, prepared.work_size)
    elif tool == "erase":
        prompt, negative = erase_prompts_for(spec, order.objects, negative, "objects")
    task = prepared.task_inputs(
        edit_task(tool, prepared.mask is not None),
        edit_strength(tool, order.strength),
        order.image_guidance if tool == "instruct" else None,
    )
    width, height = prepared.work_size
    return build_params(
        spec,
        settings,
        replace(order.sampling, negative_prompt=negative),
        prompt=prompt,
        n=order.n,
        task=task,
        width=width,
        height=height,
    )


def check_edit(
    order: EditOrder,
    catalog: Catalog,
    settings: Settings,
    sizes: tuple[tuple[int, int], tuple[int, int]] | None = None,
) -> str:
    """What ``Edits.create`` refuses before reserving, tenant aside (``kiln batch`` checks
    its lines so): the tool's fields, exactly one input, the mask's size where ``sizes``
    gives the image's and the mask's, prompt lengths, the model. Returns the model id, or
    "" where it is the source asset's (known once the tenant's asset is read)."""
    order.check_tool()
    if (order.source.image is None) == (order.source.asset_id is None):
        raise ParamError("image", "give exactly one of image (base64) and asset_id")
    if sizes is not None:
        image_size, mask_size = sizes
        check_mask_size(mask_size, image_size, "mask")
    masked = order.mask is not None
    check_prompt(order.prompt, "prompt", settings.max_prompt_chars)
    check_prompt(order.sampling.negative_prompt, "negative_prompt", settings.max_prompt_chars)
    if order.model is None and order.source.asset_id is not None:
        return ""
    spec = choose_model(catalog, order.tool, order.model, None, masked=masked)
    if order.tool == "instruct":
        check_instruct(family_of(spec.family), order.image_guidance)
    spec = inpaint_model(catalog, spec, edit_task(order.tool, masked))
    if order.tool == "erase":
        erase_prompts_for(spec, order.objects, None, "objects")
    return spec.id


@dataclass(kw_only=True, eq=False)
class Edits:
    """Edits and OpenAI's edits and variations; built once by ``build_core``."""

    settings: Settings
    catalog: Catalog
    inputs: ImageInputs
    conditioning: Conditioning
    image_to_prompt: ImageToPrompt
    paid: PaidImages

    async def create(self, tenant_id: str, order: EditOrder, request_id: str | None = None) -> Edit:
        """A native edit of ``order.source`` with ``order.tool``: results at the input's
        size, charged the tool's price per image."""
        started = time.perf_counter()  # server_total counts the input's decoding and checks
        order.check_tool()
        source = await self.inputs.load(tenant_id, order.source, use=Use.DERIVE)
        mask = None
        if order.mask is not None:
            mask = await asyncio.to_thread(decode_mask, self.settings, order.mask, source.size)
        spec = choose_model(
            self.catalog,
            order.tool,
            order.model,
            source.source.model if source.source is not None else None,
            masked=mask is not None,
        )
        spec = inpaint_model(self.catalog, spec, edit_task(order.tool, mask is not None))
        original = source.pixels
        prepared = await prepare_for(spec, original, mask, erase=order.tool == "erase")
        if order.image_to_prompt is not None:
            # Resolved (and refused, when bad) before anything is charged; free inside an
            # edit as inside a generation (serving/core/image_to_prompt/mixing.py).
            prompt = await prompt_with_extract(
                self.image_to_prompt, tenant_id, order.prompt, order.image_to_prompt
            )
            order = replace(order, prompt=prompt)
        params = edit_params(spec, self.settings, order, prepared)
        return await self._run(
            tenant_id, spec, params, request_id, source, original, prepared, order.tool, started
        )

    async def create_openai(
        self, tenant_id: str, order: OpenAIEditOrder, request_id: str | None = None
    ) -> Edit:
        """OpenAI's edit of ``order.images[0]`` (``serving.core.edits.openai``)."""
        started = time.perf_counter()
        spec = openai_model(self.catalog, order.model)
        images = [await self._read(upload, "image") for upload in order.images]
        first = images[0]
        mask = None
        if order.mask is not None:
            mask_image = await self._read(order.mask, "mask")
            check_mask_size(mask_image.size, first.size, "mask")
            if mask_image.mode != "RGBA":
                raise ParamError("mask", "the mask needs an alpha channel (alpha 0 = edit)")
            mask = mask_from_alpha(np.asarray(mask_image)[..., 3])
        elif first.mode == "RGBA" and (np.asarray(first)[..., 3] == 0).any():
            mask = mask_from_alpha(np.asarray(first)[..., 3])
        if mask is not None and not mask.any():
            raise ParamError("mask", "the mask marks nothing to edit (no pixel has alpha 0)")
        pixels, mask = fit_to_size(spec, order.size, np.asarray(first.convert("RGB")), mask)
        call = edit_call(spec, order, pixels, mask)
        require_feature(self.catalog, spec, call.operation, "model")
        adapter = await self._references(spec, images[1:])
        spec = inpaint_model(self.catalog, spec, call.task)
        call = replace(call, adapter=adapter)
        return await self._run_call(
            tenant_id, request_id, spec, order.sampling, order.n, call, started
        )

    async def variation(
        self, tenant_id: str, order: VariationOrder, request_id: str | None = None
    ) -> Edit:
        """OpenAI's variation: an img2img of ``order.image`` with no prompt, on a base
        model."""
        started = time.perf_counter()
        spec = openai_model(self.catalog, order.model)
        if spec.kind != ModelKind.BASE:
            raise ParamError("model", f"{spec.id!r} makes no variations: use a base model")
        require_feature(self.catalog, spec, "variations", "model")
        image = await self._read(order.image, "image")
        pixels, _ = fit_to_size(spec, order.size, np.asarray(image.convert("RGB")), None)
        strength = order.strength if order.strength is not None else VARIATION_STRENGTH
        call = ImageCall(pixels, None, Task.IMAGE_TO_IMAGE, strength, "", operation="variation")
        return await self._run_call(
            tenant_id, request_id, spec, order.sampling, order.n, call, started
        )

    async def _read(self, upload: ImageUpload, param: str) -> Image.Image:
        """One uploaded file as a loaded PIL image (alpha kept): 413 by its size before a
        byte is decoded, then the shared pixel and format checks."""
        settings = self.settings
        if upload.size is not None:
            check_image_bytes(upload.size, param, settings)
        data = await upload.read(settings.image_max_bytes + 1)
        return await asyncio.to_thread(decode_image, data, param, settings, keep_alpha=True)

    async def _references(self, spec: ModelSpec, images: list[Any]) -> AdapterConditioning | None:
        """IP-Adapter conditioning from the extra images of an OpenAI edit, or None."""
        if not images:
            return None
        ip_adapter_for(self.catalog, spec, "image")  # 400 naming models with one
        conditionings = [
            await self.conditioning.reference(
                spec, np.asarray(image.convert("RGB")), REFERENCE_SCALE
            )
            for image in images
        ]
        return combine(*conditionings)

    async def _run_call(
        self,
        tenant_id: str,
        request_id: str | None,
        spec: ModelSpec,
        sampling: Sampling,
        n: int,
        call: ImageCall,
        started: float,
    ) -> Edit:
        """An OpenAI edit or variation's pipeline call, resolved, on the paid path
        (``started``: when the request's use case began)."""
        prepared = await prepare_for(spec, call.pixels, call.mask, erase=call.erase)
        if call.negative_prompt is not None:
            sampling = replace(sampling, negative_prompt=call.negative_prompt)
        strength = 1.0 if call.strength is None else call.strength
        width, height = prepared.work_size
        params = build_params(
            spec,
            self.settings,
            sampling,
            prompt=call.prompt,
            n=n,
            task=prepared.task_inputs(call.task, strength),
            adapter=call.adapter,
            width=width,
            height=height,
        )
        return await self._run(
            tenant_id,
            spec,
            params,
            request_id,
            None,
            call.pixels,
            prepared,
            call.operation,
            started,
        )

    async def _run(
        self,
        tenant_id: str,
        spec: ModelSpec,
        params: GenerationParams,
        request_id: str | None,
        source: InputImage | None,
        original: np.ndarray,
        prepared: PreparedEdit,
        operation: str,
        started: float,
    ) -> Edit:
        """The paid path of an edit or variation: the ``operation``'s price per image (the
        tool's: instruct, replace, recreate, erase, variation), the input's rights carried
        to the results (``source``: the input, None for a bare upload), each result
        composited over the original; ``server_total`` counts from ``started``."""
        asset = source.source if source is not None else None
        keep = Keep(
            kind=derived_kind([source] if source else [], MODEL_ASSET_KINDS[spec.kind]),
            style=asset.style if asset is not None else None,
            parent_id=asset.id if asset is not None else None,
            terms=spec.terms,
        )
        price = Price(self.catalog.price_of(operation), params.n)
        order = self.paid.generation(
            params, price, keep, started, finish=lambda image: composite(original, image, prepared)
        )
        return await self.paid.images(tenant_id, order, request_id)
