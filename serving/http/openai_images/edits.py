"""OpenAI's ``POST /v1/images/edits`` and ``POST /v1/images/variations`` (multipart).

Wire rules are OpenAI's: files under ``image`` (or repeated ``image[]``) and ``mask``,
every other field a form string (``n=2`` arrives as ``"2"``), the mask's alpha 0 marks
what to edit and must have the image's size. Without a mask, an image with transparent
pixels uses its own alpha as the mask (as OpenAI's edits do).

What Kiln does with them, decided where OpenAI's API leaves it to the model:
- with a mask, the first image is *replaced* inside it (inpaint at ``strength``, default
  1); outside the feathered mask the result keeps the input's pixels exactly. Kiln's
  ``tool`` field (the SDK's ``extra_body``) picks ``recreate`` or ``erase`` instead; for
  erase the prompt names what is removed (it goes to the negative prompt of the fill);
- without one, the whole first image is recreated from the prompt (img2img at
  ``strength``, default 0.6), keeping its layout;
- on an ``instruct`` model, the prompt is the instruction (no mask);
- further images (``image[]`` after the first) steer the result through the model
  family's IP-Adapter, as reference images (400 where none is installed);
- a variation is an img2img of the image at ``strength`` (default 0.6) with no prompt;
- ``size`` (one of the model's sizes) crops and scales the input to it first; by
  default the result has the input's size;
- edits and variations cost the catalog's price of the tool per image; an edit of nothing
  but uploads is a base-kind asset, results carry Kiln's ``asset_id``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from pipelines.edit_tools import cover, erase_prompts, mask_from_alpha
from pipelines.params import MAX_IMAGES, AdapterConditioning, ParamError, resolve_size
from serving.core.app import KilnCore
from serving.core.generations.params import build_params
from serving.core.image_inputs import check_image_bytes, check_mask_size, decode_image
from serving.core.pins.conditioning import combine, ip_adapter_for
from serving.http.auth import Tenant
from serving.http.edits.serving import (
    edit_strength,
    edit_task,
    inpaint_model,
    prepare_for,
    run_image_task,
)
from serving.http.errors import validation_error
from serving.http.generations.protocol import SamplingFields
from serving.http.openai_images.protocol import ImagesResponse
from serving.http.openai_images.responses import ResponseOptions, images_response
from weights.catalog import ModelSpec

# A variation's strength when the request leaves it out.
VARIATION_STRENGTH = 0.6
# IP-Adapter scale of each extra image of an edit.
REFERENCE_SCALE = 0.6
# Most images one edit takes (the first is edited, the rest are references).
MAX_EDIT_IMAGES = 10
FILE_FIELDS = ("image", "image[]", "mask")


class ImageFormFields(SamplingFields):
    """The text fields both routes share; numbers arrive as strings (lax parsing)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    n: int = Field(1, ge=1, le=MAX_IMAGES)
    size: str | None = "auto"
    response_format: Literal["b64_json", "url"] = "b64_json"
    output_format: Literal["png", "jpeg", "webp"] = "png"
    output_compression: int | None = Field(None, ge=0, le=100)
    strength: float | None = Field(None, gt=0, le=1)
    # OpenAI fields without meaning here: accepted, ignored.
    user: str | None = None
    quality: str | None = None
    background: str | None = None
    input_fidelity: str | None = None
    moderation: str | None = None
    partial_images: str | None = None
    stream: Literal["false", "False"] | None = None


class ImageEditFields(ImageFormFields):
    prompt: str
    # Kiln's extension (extra_body): which edit tool; default replace with a mask,
    # recreate without. With erase, the prompt names what is removed.
    tool: Literal["replace", "recreate", "erase"] | None = None


@dataclass(frozen=True)
class ImageCall:
    """One OpenAI edit or variation, resolved: what runs and on what."""

    pixels: np.ndarray
    mask: np.ndarray | None
    task: str
    strength: float | None
    prompt: str
    negative_prompt: str | None = None
    adapter: AdapterConditioning | None = None
    erase: bool = False
    operation: str = "replace"  # the catalog price it is charged


async def read_form(request: Request, fields: type[BaseModel]) -> tuple[Any, dict[str, list]]:
    """The form's text fields validated as ``fields`` and its files by field name."""
    form = await request.form(max_files=MAX_EDIT_IMAGES + 1)
    texts: dict[str, str] = {}
    files: dict[str, list[UploadFile]] = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            if name not in FILE_FIELDS:
                raise ParamError(name, f"unexpected file field {name!r}")
            files.setdefault(name, []).append(value)
        elif name in FILE_FIELDS:
            raise ParamError(name, f"{name} must be a file upload")
        else:
            texts[name] = value
    try:
        return fields.model_validate(texts), files
    except ValidationError as exc:
        raise validation_error(exc.errors()) from None


async def read_image(upload: UploadFile, param: str, state: KilnCore) -> Any:
    """One uploaded file as a loaded PIL image (alpha kept): 413 by its size before a
    byte is decoded, then the shared pixel and format checks."""
    if upload.size is not None:
        check_image_bytes(upload.size, param, state.settings)
    data = await upload.read(state.settings.image_max_bytes + 1)
    return await asyncio.to_thread(decode_image, data, param, state.settings, keep_alpha=True)


def choose_openai_model(state: KilnCore, requested: str | None) -> ModelSpec:
    """The request's model, or the catalog's first base model."""
    if requested is not None:
        return state.catalog.get(requested)
    return next(spec for spec in state.catalog if spec.kind == "base")


def fit_to_size(spec: ModelSpec, size: str | None, pixels: np.ndarray, mask: np.ndarray | None):
    """Crop and scale the input (and mask) to a requested ``size`` of the model."""
    if size is None or size == "auto":
        return pixels, mask
    _, width, height = resolve_size(spec, size=size)  # 400 for a size the model lacks
    fitted = cover(pixels, (width, height))
    if mask is not None:
        mask = np.where(cover(mask, (width, height)) >= 128, 255, 0).astype(np.uint8)
    return fitted, mask


class ServingOpenAIEdits:
    """``POST /v1/images/edits`` and ``POST /v1/images/variations``."""

    def __init__(self, state: KilnCore):
        self.state = state

    async def edit(
        self, request: Request, tenant: Tenant, request_id: str | None
    ) -> ImagesResponse:
        state = self.state
        fields, files = await read_form(request, ImageEditFields)
        uploads = files.get("image", []) + files.get("image[]", [])
        if not uploads:
            raise ParamError("image", "give the image to edit as image (or image[])")
        if len(uploads) > MAX_EDIT_IMAGES:
            raise ParamError("image", f"at most {MAX_EDIT_IMAGES} images")
        if len(files.get("mask", [])) > 1:
            raise ParamError("mask", "give one mask")
        spec = choose_openai_model(state, fields.model)
        images = [await read_image(u, "image", state) for u in uploads]
        first = images[0]
        mask = None
        if files.get("mask"):
            mask_image = await read_image(files["mask"][0], "mask", state)
            check_mask_size(mask_image.size, first.size, "mask")
            if mask_image.mode != "RGBA":
                raise ParamError("mask", "the mask needs an alpha channel (alpha 0 = edit)")
            mask = mask_from_alpha(np.asarray(mask_image)[..., 3])
        elif first.mode == "RGBA" and (np.asarray(first)[..., 3] == 0).any():
            mask = mask_from_alpha(np.asarray(first)[..., 3])
        if mask is not None and not mask.any():
            raise ParamError("mask", "the mask marks nothing to edit (no pixel has alpha 0)")
        pixels, mask = fit_to_size(spec, fields.size, np.asarray(first.convert("RGB")), mask)
        call = self._edit_call(spec, fields, pixels, mask)
        adapter = await self._references(spec, images[1:])
        spec = inpaint_model(self.state.catalog, spec, call.task)
        call = replace(call, adapter=adapter)
        return await self._run(tenant, request_id, spec, fields, call, str(request.base_url))

    def _edit_call(
        self, spec: ModelSpec, fields: ImageEditFields, pixels: np.ndarray, mask: np.ndarray | None
    ) -> ImageCall:
        """Which tool an edit is and what it runs (see the module docstring)."""
        if spec.kind == "instruct":
            if mask is not None or fields.tool is not None:
                raise ParamError("mask", f"{spec.id!r} edits by instruction: no mask, no tool")
            return ImageCall(pixels, None, "instruct", None, fields.prompt, operation="instruct")
        if not (spec.kind == "base" or (spec.kind == "inpaint" and mask is not None)):
            raise ParamError("model", f"{spec.id!r} cannot edit images without a mask")
        tool = fields.tool or ("replace" if mask is not None else "recreate")
        if tool in ("replace", "erase") and mask is None:
            raise ParamError("mask", f"{tool} needs a mask (alpha 0 = edit)")
        task = edit_task(tool, mask is not None)
        strength = edit_strength(tool, fields.strength)
        if tool != "erase":
            return ImageCall(pixels, mask, task, strength, fields.prompt, operation=tool)
        prompt, negative = erase_prompts(fields.prompt.strip() or None, fields.negative_prompt)
        return ImageCall(
            pixels, mask, task, strength, prompt, negative, erase=True, operation="erase"
        )

    async def variation(
        self, request: Request, tenant: Tenant, request_id: str | None
    ) -> ImagesResponse:
        fields, files = await read_form(request, ImageFormFields)
        uploads = files.get("image", [])
        if len(uploads) != 1 or files.get("image[]") or files.get("mask"):
            raise ParamError("image", "a variation takes exactly one image and no mask")
        spec = choose_openai_model(self.state, fields.model)
        if spec.kind != "base":
            raise ParamError("model", f"{spec.id!r} makes no variations: use a base model")
        image = await read_image(uploads[0], "image", self.state)
        pixels, _ = fit_to_size(spec, fields.size, np.asarray(image.convert("RGB")), None)
        strength = fields.strength if fields.strength is not None else VARIATION_STRENGTH
        call = ImageCall(pixels, None, "image_to_image", strength, "", operation="variation")
        return await self._run(tenant, request_id, spec, fields, call, str(request.base_url))

    async def _references(self, spec: ModelSpec, images: list[Any]) -> AdapterConditioning | None:
        """IP-Adapter conditioning from the extra images of an edit, or None."""
        if not images:
            return None
        ip_adapter_for(self.state.catalog, spec, "image")  # 400 naming models with one
        conditionings = [
            await self.state.conditioning.reference(
                spec, np.asarray(image.convert("RGB")), REFERENCE_SCALE
            )
            for image in images
        ]
        return combine(*conditionings)

    async def _run(
        self,
        tenant: Tenant,
        request_id: str | None,
        spec: ModelSpec,
        fields: ImageFormFields,
        call: ImageCall,
        base_url: str,
    ) -> ImagesResponse:
        state = self.state
        settings = state.settings
        prepared = await prepare_for(spec, call.pixels, call.mask, erase=call.erase)
        sampling = fields.sampling()
        if call.negative_prompt is not None:
            sampling = replace(sampling, negative_prompt=call.negative_prompt)
        params = build_params(
            spec,
            settings,
            sampling,
            prompt=call.prompt,
            n=fields.n,
            task=call.task,
            strength=call.strength,
            adapter=call.adapter,
            **prepared.call_fields(),
        )
        result = await run_image_task(
            state, tenant, spec, params, request_id, None, call.pixels, prepared, call.operation
        )
        options = ResponseOptions(
            fields.response_format, fields.output_format, fields.output_compression, base_url
        )
        return await images_response(state, result.images, options)
