"""What Kiln does with OpenAI's edits and variations, decided where OpenAI's API leaves it
to the model (``Edits.create_openai``, ``Edits.variation``):

- with a mask, the first image is *replaced* inside it (inpaint at ``strength``, default
  1); outside the feathered mask the result keeps the input's pixels exactly. Kiln's
  ``tool`` (the SDK's ``extra_body``) picks ``recreate`` or ``erase`` instead; for erase
  the prompt names what is removed (it goes to the negative prompt of the fill);
- without one, the whole first image is recreated from the prompt (img2img at
  ``strength``, default 0.6), keeping its layout; an image with transparent pixels uses
  its own alpha as the mask (as OpenAI's edits do);
- on an ``instruct`` model (InstructPix2Pix, FLUX.1 Kontext), the prompt is the
  instruction (no mask); on a base model whose family edits by instruction (FLUX.2
  [klein]) an edit is replace or recreate as on any base model unless ``tool`` is
  ``instruct``: then the prompt is the instruction and no mask is taken, as on an instruct
  model (the default stays replace/recreate so an SDK call that works on every base model
  does the same thing on [klein]);
- erase on a model without classifier-free guidance (FLUX.1, distilled [klein]) fills
  with the fixed background prompt alone: the prompt's words cannot be pushed away there;
- further images (after the first) steer the result through the model family's
  IP-Adapter, as reference images (400 where none is installed);
- a variation is an img2img of the image at ``strength`` (default 0.6) with no prompt;
- ``size`` (one of the model's sizes) crops and scales the input to it first; by
  default the result has the input's size;
- edits and variations cost the catalog's price of the tool per image; an edit of
  nothing but uploads is a base-kind asset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.edit_tools import cover
from pipelines.families import family_of
from pipelines.params import AdapterConditioning, ParamError, resolve_size
from pipelines.task import Task
from pipelines.tasks.instruct import check_instruct
from serving.core.edits.orders import OpenAIEditOrder
from serving.core.edits.tools import edit_strength, edit_task, erase_prompts_for
from weights.catalog import Catalog, ModelKind, ModelSpec

# A variation's strength when the request leaves it out.
VARIATION_STRENGTH = 0.6
# IP-Adapter scale of each extra image of an edit.
REFERENCE_SCALE = 0.6
# Most images one edit takes (the first is edited, the rest are references).
MAX_EDIT_IMAGES = 10


@dataclass(frozen=True)
class ImageCall:
    """One OpenAI edit or variation, resolved: what runs and on what."""

    pixels: np.ndarray
    mask: np.ndarray | None
    task: Task
    strength: float | None
    prompt: str
    negative_prompt: str | None = None
    adapter: AdapterConditioning | None = None
    erase: bool = False
    operation: str = "replace"  # the catalog price it is charged


def openai_model(catalog: Catalog, requested: str | None) -> ModelSpec:
    """The request's model, or the catalog's first base model."""
    if requested is not None:
        return catalog.get(requested)
    return next(spec for spec in catalog if spec.kind == ModelKind.BASE)


def fit_to_size(
    spec: ModelSpec, size: str | None, pixels: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Crop and scale the input (and mask) to a requested ``size`` of the model."""
    if size is None or size == "auto":
        return pixels, mask
    _, width, height = resolve_size(spec, size=size)  # 400 for a size the model lacks
    fitted = cover(pixels, (width, height))
    if mask is not None:
        mask = np.where(cover(mask, (width, height)) >= 128, 255, 0).astype(np.uint8)
    return fitted, mask


def edit_call(
    spec: ModelSpec, order: OpenAIEditOrder, pixels: np.ndarray, mask: np.ndarray | None
) -> ImageCall:
    """Which tool an edit is and what it runs (see the module docstring)."""
    if spec.kind == ModelKind.INSTRUCT:
        if mask is not None or order.tool not in (None, "instruct"):
            raise ParamError("mask", f"{spec.id!r} edits by instruction: no mask, no tool")
        return ImageCall(pixels, None, Task.INSTRUCT, None, order.prompt, operation="instruct")
    if order.tool == "instruct":
        if not (spec.kind == ModelKind.BASE and spec.family.has_feature("instruct")):
            raise ParamError("tool", f"model {spec.id!r} has no instruction edit")
        if mask is not None:
            raise ParamError("mask", "an instruction edit takes no mask")
        height, width = pixels.shape[:2]
        check_instruct(family_of(spec.family), None, (width, height))
        return ImageCall(pixels, None, Task.INSTRUCT, None, order.prompt, operation="instruct")
    if not (spec.kind == ModelKind.BASE or (spec.kind == ModelKind.INPAINT and mask is not None)):
        raise ParamError("model", f"{spec.id!r} cannot edit images without a mask")
    tool = order.tool or ("replace" if mask is not None else "recreate")
    if tool in ("replace", "erase") and mask is None:
        raise ParamError("mask", f"{tool} needs a mask (alpha 0 = edit)")
    task = edit_task(tool, mask is not None)
    strength = edit_strength(tool, order.strength)
    if tool != "erase":
        return ImageCall(pixels, mask, task, strength, order.prompt, operation=tool)
    negative = order.sampling.negative_prompt
    prompt, negative = erase_prompts_for(spec, order.prompt.strip() or None, negative, None)
    return ImageCall(pixels, mask, task, strength, prompt, negative, erase=True, operation="erase")
