"""Agentic generation, the use case: ``POST /v1/agentic/extract`` (``extract``), and
``POST /v1/agentic/generations`` and batch agentic lines (``create``).

    result = await core.agentic.create(tenant_id, AgenticOrder(...), request_id)
    result.images[i].asset, result.images[i].pixels, result.detail.images[i].scores

Everything a request can get wrong is checked before credits are reserved: the
reference count (1-10), each image (not an image, over the byte or pixel limits, someone
else's asset, an unlicensed style image), component names, source indices, strengths,
the budget (``KILN_AGENTIC_MAX_CANDIDATES``/``_MAX_ROUNDS``, and n x candidates <= 12,
one call) and the model (``serving.core.agentic.checks``). A bad request charges nothing
and stores nothing. Then the agent's rounds run through the one paid path
(``serving.core.paid_images``) at the flat ``agentic`` price.

Decisions where the issue is silent:
- extraction is free (CPU statistics, no model call); a generation costs the flat
  ``agentic`` price once the images are stored, refunded if it fails;
- a style-kind asset as a reference must be licensed (403 otherwise): agentic images are
  free for commercial use, so they may not launder an unlicensed style image;
- a generation takes references or a saved recipe, not both; from a recipe, structure
  guidance comes from the recipe's thumbnail of the composition source. Every
  reference's thumbnail in a client's recipe must be an image (a missing or empty one is
  a 400 naming it, as any bad image): it is decoded through the input decoder's limits
  before credits are held, and re-encoded at the recipe's own thumbnail size, so the
  agent never decodes a client's bytes;
- image-to-prompt (where the server has it) and the references' mean IP-Adapter
  embedding (where the model's family has one) steer inside the reservation
  (``serving.core.agentic.steering``); the plan's notes say what was used and skipped.
- on a model whose text encoder counts tokens (T5, Qwen3: FLUX), the user's prompt is
  counted by the model before credits are held (400 naming ``prompt``, as generations),
  and the references' descriptions are kept only as far as the prompt still fits (the
  last ones dropped first, with a note): they add to the user's words, which must not
  fail the request inside the reservation.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from agentic.agent import Agent, AgentRequest, AgentResult, grading_cube
from agentic.recipe import MAX_REFERENCES, Recipe, check_choices, extract_recipe
from pipelines.params import ParamError
from serving.core.agentic.checks import check_agentic, checked_recipe
from serving.core.agentic.orders import AgenticExtractOrder, AgenticOrder
from serving.core.agentic.results import AgenticDetail, AgenticGeneration, Extraction, KeptImage
from serving.core.agentic.steering import reference_prompts, style_conditioning
from serving.core.asset_rights import Use
from serving.core.assets.delivery import Made
from serving.core.assets.service import ImageRecord
from serving.core.image_inputs import ImageInputs, ImageSource
from serving.core.image_to_prompt.client import ImageToPromptClient
from serving.core.model_client import ModelClient
from serving.core.paid_images import ImageOrder, PaidImages, Price, Rendering
from serving.core.settings import Settings
from weights.catalog import Catalog, ComponentKind, ModelSpec

OPERATION = "agentic"
ASSET_KIND = "agentic"


def kept_images(
    spec: ModelSpec,
    request: AgentRequest,
    result: AgentResult,
    generation_id: str,
    lut_recipe: Recipe | None = None,
) -> tuple[list[Made], tuple[KeptImage, ...]]:
    """Every image the agent kept as a free ``agentic`` asset to store, and its account
    (with its grading as a ``.cube`` LUT when ``lut_recipe`` is given). Blocking."""
    plan = result.plan
    made, kept = [], []
    for candidate in result.images:
        height, width = candidate.pixels.shape[:2]
        record = ImageRecord(
            kind=ASSET_KIND,
            model=spec.id,
            prompt=plan["prompt"],
            negative_prompt=request.negative_prompt or None,
            seed=candidate.seed,
            width=width,
            height=height,
            params={
                "task": plan["task"],
                "structure": plan["structure"],
                "knobs": candidate.knobs,
                "score": round(candidate.scores.total, 4),
            },
            generation_id=generation_id,
            terms=spec.terms,
        )
        made.append(Made(candidate.pixels, record))
        cube = grading_cube(candidate, lut_recipe) if lut_recipe else None
        kept.append(KeptImage(candidate.scores, candidate.knobs, cube))
    return made, tuple(kept)


@dataclass(kw_only=True, eq=False)
class Agentic:
    """Recipes from references and images carrying them; built once by ``build_core``."""

    settings: Settings
    catalog: Catalog
    models: ModelClient
    clip: ImageToPromptClient | None
    inputs: ImageInputs
    paid: PaidImages

    async def load_references(
        self, tenant_id: str, references: tuple[ImageSource, ...] | None
    ) -> list[np.ndarray]:
        """1-10 references as uint8 RGB, through the shared image limits and rights."""
        count = len(references or ())
        if not 1 <= count <= MAX_REFERENCES:
            raise ParamError("references", f"give 1 to {MAX_REFERENCES} references, got {count}")
        images = []
        for index, reference in enumerate(references or ()):
            loaded = await self.inputs.load(
                tenant_id,
                reference,
                use=Use.REFERENCE,
                param=f"references.{index}.image",
                asset_param=f"references.{index}.asset_id",
            )
            images.append(loaded.pixels)
        return images

    async def extract(self, tenant_id: str, order: AgenticExtractOrder) -> Extraction:
        """The recipe of ``order.references`` with the user's picks. Free."""
        started = time.perf_counter()
        check_choices(order.components, len(order.references))  # before decoding anything
        images = await self.load_references(tenant_id, order.references)
        loaded = time.perf_counter()
        recipe = await asyncio.to_thread(extract_recipe, images, order.components)
        done = time.perf_counter()
        return Extraction(
            recipe, {"load": loaded - started, "extract": done - loaded, "total": done - started}
        )

    async def create(
        self, tenant_id: str, order: AgenticOrder, request_id: str | None = None
    ) -> AgenticGeneration:
        """``order.n`` images carrying the recipe, stored as ``tenant_id``'s assets, at the
        flat ``agentic`` price; ``request_id`` names the reservation in the ledger."""
        settings = self.settings
        started = time.perf_counter()
        spec, budget = check_agentic(order, self.catalog, settings)
        images: list[np.ndarray] | None = None
        if order.references is not None:
            images = await self.load_references(tenant_id, order.references)
            recipe = await asyncio.to_thread(extract_recipe, images, order.components)
        else:
            recipe = await asyncio.to_thread(
                checked_recipe, order.recipe, order.components, settings
            )
        controlnet = self.catalog.first_component(ComponentKind.CONTROLNET, spec.family)
        agent_request = AgentRequest(
            prompt=order.prompt,
            n=order.n,
            negative_prompt=order.negative_prompt,
            seed=order.seed,
            steps=order.steps,
            guidance=order.guidance,
            resolution=order.resolution,
            aspect_ratio=order.aspect_ratio,
            controlnet=controlnet.id if controlnet else None,
        )
        loop = asyncio.get_running_loop()

        def generate(params: Any) -> list[np.ndarray]:
            # The agent runs in a worker thread; the model client lives on the loop.
            output = asyncio.run_coroutine_threadsafe(self.paid.generate(params), loop).result()
            return list(output.images)

        agent = Agent(spec, recipe, generate, images, settings.generation_defaults)
        # Size and task problems surface before any credit is held.
        await asyncio.to_thread(agent.check, agent_request, budget)

        async def render(generation_id: str) -> Rendering[AgenticDetail]:
            notes = [
                f"structure: ControlNet {controlnet.id}"
                if controlnet
                else "structure: no ControlNet for this model; img2img from the layout"
            ]
            prompts: tuple[str, ...] = ()
            if images is not None:
                prompts, prompt_notes = await reference_prompts(self.clip, images, recipe)
                notes += prompt_notes
                prompts, fit_notes = await self._fitting(agent, agent_request, prompts)
                notes += fit_notes
            adapter, adapter_note = await style_conditioning(
                self.catalog, self.models, spec, images
            )
            notes.append(adapter_note)
            request = replace(
                agent_request, reference_prompts=prompts, adapter=adapter, notes=tuple(notes)
            )
            result = await asyncio.to_thread(agent.run, request, budget)
            made, kept = await asyncio.to_thread(
                kept_images,
                spec,
                request,
                result,
                generation_id,
                recipe if order.grading_lut else None,
            )
            plan = {k: v for k, v in result.plan.items() if k != "structure_pixels"}
            return Rendering(made, {}, AgenticDetail(recipe, plan, result.trace, kept))

        price = Price(self.catalog.price_of(OPERATION), 1, per_image=False)
        first = agent.first_params(agent_request)
        # Prompts counted where the model runs (T5, Qwen3): refused before the reservation.
        counted = first.sequence_length is not None
        check = (lambda: self.models.check(first)) if counted else None
        return await self.paid.images(
            tenant_id,
            ImageOrder(spec.id, price, render, started, id_prefix="agen", check=check),
            request_id,
        )

    async def _fitting(
        self, agent: Agent, request: AgentRequest, prompts: tuple[str, ...]
    ) -> tuple[tuple[str, ...], list[str]]:
        """The references' descriptions that still fit the model's prompt limit beside the
        user's words (all of them where the encoder has no limit: CLIP's windows)."""
        kept = prompts
        while kept:
            params = agent.first_params(replace(request, reference_prompts=kept))
            if params.sequence_length is None:
                return kept, []
            try:
                await self.models.check(params)
                break
            except ParamError as error:
                if error.param != "prompt":
                    raise
                kept = kept[:-1]
        if len(kept) == len(prompts):
            return kept, []
        return kept, [
            f"image-to-prompt: {len(prompts) - len(kept)} description(s) dropped to fit "
            "the model's prompt limit"
        ]
