"""Which model runs an edit tool, which pipeline task it is and at what strength, shared by
the native and the OpenAI edits (and ``kiln batch``'s line checks).

The model: the request's ``model``; else the source asset's model where it has the tool;
else the first catalog model that has it (base and instruct models in catalog order, a
dedicated inpaint model after them: it is reached through its base model). Instruct runs
on ``instruct`` models (InstructPix2Pix, FLUX.1 Kontext) and on base models whose family
edits by instruction (FLUX.2 [klein]); the other tools on any base model whose family has
them (their inpaint and img2img pipelines are derived from it, or run on the base entry's
``inpaint_model``: FLUX.1 Fill) and, with a mask, on dedicated inpaint models. A tool the
chosen model lacks is a 400 naming the models that have it.
"""

from __future__ import annotations

import asyncio

import numpy as np

from pipelines.edit_tools import ERASE_PROMPT, PreparedEdit, erase_prompts, prepare_edit
from pipelines.families import GuidanceKind, family_of
from pipelines.params import ParamError
from pipelines.task import Task
from serving.core.image_inputs import check_mask_size, decode_b64_image
from serving.core.settings import Settings
from weights.catalog import Catalog, ModelKind, ModelSpec

# Recreate's strength when the request leaves it out: keeps the layout, changes the rest.
RECREATE_STRENGTH = 0.6


def has_tool(spec: ModelSpec, tool: str, masked: bool = True) -> bool:
    """Instruct needs an instruct model, or a base model whose family edits by instruction;
    replace, recreate and erase run on base models whose family has them, and (masked) on
    dedicated inpaint models."""
    if spec.kind == ModelKind.BASE:
        return spec.family.has_feature(tool)
    if tool == "instruct":
        return spec.kind == ModelKind.INSTRUCT
    return spec.kind == ModelKind.INPAINT and masked


def inpaint_model(catalog: Catalog, spec: ModelSpec, task: Task) -> ModelSpec:
    """The model that runs an edit's ``task``: a base model's dedicated ``inpaint_model``
    for inpainting, where the catalog lists one, else the model itself."""
    target = spec.extra.get("inpaint_model")
    if task == Task.INPAINT and spec.kind == ModelKind.BASE and target is not None:
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
    # A dedicated inpaint model last: it is reached through its base model.
    having.sort(key=lambda model_id: catalog.get(model_id).kind == ModelKind.INPAINT)
    return catalog.get(having[0])


def decode_mask(
    settings: Settings, text: str, size: tuple[int, int], param: str = "mask"
) -> np.ndarray:
    """A native mask (white = edit) as uint8 HxW; it must have the image's size. Blocking."""
    mask = decode_b64_image(text, param, settings)
    check_mask_size(mask.size, size, param)
    return np.asarray(mask.convert("L"))


def erase_prompts_for(
    spec: ModelSpec, objects: str | None, negative: str | None, objects_param: str | None
) -> tuple[str, str | None]:
    """Erase's prompt and negative prompt on ``spec``. With classifier-free guidance (SD, a
    [klein] base) the fixed fill negative and the removed objects' words push them away
    (``erase_prompts``); without it (FLUX.1, distilled [klein]) there is no negative prompt,
    so the fill prompt alone steers: ``objects`` are refused naming ``objects_param`` (the
    native field), or left out where the API requires them (OpenAI's ``prompt``; None).
    The caller's own ``negative`` is kept either way (refused on such a model, as in a
    generation)."""
    if family_of(spec.family).guidance_of(spec) is GuidanceKind.CFG:
        return erase_prompts(objects, negative)
    if objects and objects_param is not None:
        raise ParamError(
            objects_param,
            f"model {spec.id!r} runs without classifier-free guidance: erase cannot push "
            "named objects away there (they would be a negative prompt); leave them out",
        )
    return ERASE_PROMPT, negative


def edit_task(tool: str, has_mask: bool) -> Task:
    """The pipeline task of an edit tool."""
    if tool == "instruct":
        return Task.INSTRUCT
    if tool == "recreate" and not has_mask:
        return Task.IMAGE_TO_IMAGE
    return Task.INPAINT


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
        multiple=spec.family.size_multiple,
        max_side=max(spec.resolutions.values()),
        erase=erase,
    )
