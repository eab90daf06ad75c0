"""What steers an agentic generation besides the recipe, where the server has it: the
references' image-to-prompt text (``reference_prompts``) and their mean IP-Adapter
embedding (``style_conditioning``). Both are model work, run inside the reservation; a
saved recipe has no images, so neither applies. Each says in a note what was used or
skipped and why, for the plan."""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from agentic.recipe import Recipe
from pipelines.params import AdapterConditioning, AdapterImage
from serving.core.image_to_prompt.client import ImageToPromptClient
from serving.core.model_client import ModelClient
from serving.core.pins.conditioning import embed_input
from weights.catalog import Catalog, ComponentKind, ModelSpec

logger = logging.getLogger(__name__)

PROMPT_REFERENCES = 3
# IP-Adapter scale of the references' mean embedding: their look steers, the prompt and
# the structure guidance still lead.
STYLE_ADAPTER_SCALE = 0.5


async def reference_prompts(
    clip: ImageToPromptClient | None, images: list[np.ndarray], recipe: Recipe
) -> tuple[tuple[str, ...], list[str]]:
    """Image-to-prompt text of the ``PROMPT_REFERENCES`` heaviest composition sources
    where the server has the feature; otherwise nothing, and a note why."""
    if clip is None:
        return (), ["image-to-prompt: not installed on this server; skipped"]
    try:
        from pipelines.image_to_prompt.pipeline import ImageToPromptParams
    except ImportError:
        return (), ["image-to-prompt: not installed on this server; skipped"]
    weights = recipe.components["composition"].weights
    order = sorted(range(len(images)), key=lambda i: -weights.get(i, 0.0))
    prompts = []
    try:
        for index in order[:PROMPT_REFERENCES]:
            output = await clip.extract(images[index], ImageToPromptParams(top_k=3))
            prompts.append(output.prompt)
    except Exception as exc:  # no CLIP component, or its deployment down: plan without it
        logger.info("agentic: image-to-prompt unavailable: %s", exc)
        return (), [f"image-to-prompt: unavailable ({type(exc).__name__}); skipped"]
    return tuple(prompts), [f"image-to-prompt: {len(prompts)} reference(s) described"]


async def style_conditioning(
    catalog: Catalog, models: ModelClient, spec: ModelSpec, images: list[np.ndarray] | None
) -> tuple[AdapterConditioning | None, str]:
    """The mean IP-Adapter embedding of the references, at ``STYLE_ADAPTER_SCALE``, where
    the model's family has an IP-Adapter; otherwise None and a note why."""
    component = catalog.first_component(ComponentKind.IP_ADAPTER, spec.family)
    if component is None:
        return None, "ip-adapter: none installed for this model's family; skipped"
    if images is None:
        return None, "ip-adapter: a saved recipe carries no images to embed; skipped"
    pixels = [await asyncio.to_thread(embed_input, image) for image in images]
    embeds = await models.embed_images(spec.id, component.id, pixels)
    mean = np.asarray(embeds, np.float32).mean(axis=0, keepdims=True)
    source = AdapterImage("references", mean, STYLE_ADAPTER_SCALE)
    note = (
        f"ip-adapter: {component.id}, mean embedding of {len(images)} reference(s) "
        f"at scale {STYLE_ADAPTER_SCALE}"
    )
    return AdapterConditioning(component.id, (source,)), note
