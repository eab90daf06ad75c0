"""Agentic generation against the base model's deployment.

Everything a request can get wrong is checked before credits are reserved: the
reference count (1-10), each image (not an image, over the byte or pixel limits, someone
else's asset, an unlicensed style image), component names, source indices, strengths,
the budget (``KILN_AGENTIC_MAX_CANDIDATES``/``_MAX_ROUNDS``, and n x candidates <= 12,
one call) and the model. A bad request charges nothing and stores nothing.

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
- image-to-prompt (where the server has it) describes up to ``PROMPT_REFERENCES`` of the
  references, heaviest composition source first; where the model's family has an
  IP-Adapter, the references' mean embedding steers at ``STYLE_ADAPTER_SCALE``. Both run
  inside the reservation (model work); a saved recipe has no images, so neither applies.
  The plan's notes say what was used and what was skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import replace
from typing import Any

import numpy as np

from agentic.agent import (
    Agent,
    AgentRequest,
    AgentResult,
    Budget,
    check_budget,
    grading_cube,
)
from agentic.composition import thumbnail_png
from agentic.recipe import MAX_REFERENCES, Choice, Recipe, check_choices, extract_recipe
from pipelines.params import AdapterConditioning, AdapterImage, ParamError
from serving.core.app import KilnCore
from serving.core.asset_rights import Use
from serving.core.assets.service import ImageRecord
from serving.core.credits.charging import reserve
from serving.core.generations.params import check_prompt
from serving.core.image_inputs import ImageSource, decode_b64_image
from serving.core.imaging import b64
from serving.core.pins.conditioning import embed_input
from serving.http.agentic.protocol import (
    AgenticExtractRequest,
    AgenticExtractResponse,
    AgenticGenerationRequest,
    AgenticGenerationResponse,
    AgenticImage,
    AgenticReference,
    choices_of,
)
from serving.http.auth import Tenant
from weights.catalog import Catalog, ModelSpec

logger = logging.getLogger(__name__)

OPERATION = "agentic"
ASSET_KIND = "agentic"
DEFAULT_CANDIDATES = 2
DEFAULT_ROUNDS = 1
PROMPT_REFERENCES = 3
# IP-Adapter scale of the references' mean embedding: their look steers, the prompt and
# the structure guidance still lead.
STYLE_ADAPTER_SCALE = 0.5


async def load_references(
    state: KilnCore, tenant: Tenant, references: list[AgenticReference] | None
) -> list[np.ndarray]:
    """1-10 references as uint8 RGB, through the shared image limits."""
    count = len(references or [])
    if not 1 <= count <= MAX_REFERENCES:
        raise ParamError("references", f"give 1 to {MAX_REFERENCES} references, got {count}")
    images = []
    for index, reference in enumerate(references or []):
        loaded = await state.inputs.load(
            tenant.id,
            ImageSource(reference.image, reference.asset_id),
            use=Use.REFERENCE,
            param=f"references.{index}.image",
            asset_param=f"references.{index}.asset_id",
        )
        images.append(loaded.pixels)
    return images


def checked_recipe(raw: Any, choices: dict[str, Choice], settings: Any) -> Recipe:
    """A client's saved recipe: its shape (400 on ``recipe``), then each reference's
    ``composition.thumbnail_png`` decoded within the input-image limits (400/413 naming
    it) and re-encoded at the recipe's thumbnail size. Blocking (decodes images)."""
    Recipe.from_json(raw, choices)  # the shape first: what follows may index freely
    references = []
    for index, reference in enumerate(raw["references"]):
        composition = dict(reference["composition"])
        param = f"recipe.references.{index}.composition.thumbnail_png"
        text = composition.get("thumbnail_png")
        if not isinstance(text, str):
            raise ParamError(param, f"{param} must be a base64 PNG")
        image = decode_b64_image(text, param, settings)
        composition["thumbnail_png"] = thumbnail_png(np.asarray(image))
        references.append({**reference, "composition": composition})
    return Recipe.from_json({**raw, "references": references}, choices)


def budget_of(request: AgenticGenerationRequest, settings: Any) -> Budget:
    """The request's budget within the server's bounds (400 outside them)."""
    candidates = DEFAULT_CANDIDATES if request.candidates is None else request.candidates
    rounds = DEFAULT_ROUNDS if request.rounds is None else request.rounds
    if candidates > settings.agentic_max_candidates:
        raise ParamError(
            "candidates",
            f"candidates must be at most {settings.agentic_max_candidates} "
            "(KILN_AGENTIC_MAX_CANDIDATES)",
        )
    if rounds > settings.agentic_max_rounds:
        raise ParamError(
            "rounds",
            f"rounds must be at most {settings.agentic_max_rounds} (KILN_AGENTIC_MAX_ROUNDS)",
        )
    budget = Budget(candidates, rounds)
    check_budget(request.n, budget)
    return budget


def base_model(catalog: Catalog, model: str | None) -> ModelSpec:
    """The requested base model (404 unknown, 400 not a base model), or the first one."""
    if model is None:
        bases = [spec for spec in catalog if spec.kind == "base"]
        if not bases:
            raise ParamError("model", "the catalog has no base model")
        return bases[0]
    spec = catalog.get(model)
    if spec.kind != "base":
        raise ParamError("model", f"model {model!r} is not a base model")
    return spec


def check_request(
    request: AgenticGenerationRequest, catalog: Catalog, settings: Any
) -> tuple[ModelSpec, Budget, Any]:
    """What an agentic request is refused for before the tenant's images or credits are
    touched (``create``, and ``kiln batch`` before anything runs): the prompts, the base
    model, the budget, references xor recipe, the components' choices. Returns the model,
    the budget and the choices."""
    check_prompt(request.prompt, "prompt", settings.max_prompt_chars)
    check_prompt(request.negative_prompt, "negative_prompt", settings.max_prompt_chars)
    if not request.prompt.strip():
        raise ParamError("prompt", "prompt must not be empty")
    spec = base_model(catalog, request.model)
    budget = budget_of(request, settings)
    choices = choices_of(request.components)
    if (request.references is None) == (request.recipe is None):
        raise ParamError("references", "give exactly one of references and recipe")
    if request.references is not None:
        check_choices(choices, len(request.references))  # before decoding anything
    return spec, budget, choices


async def reference_prompts(
    state: KilnCore, images: list[np.ndarray], recipe: Recipe
) -> tuple[tuple[str, ...], list[str]]:
    """Image-to-prompt text of the heaviest references where the server has the feature;
    otherwise nothing, and a note why."""
    client = state.clip
    if client is None:
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
            output = await client.extract(images[index], ImageToPromptParams(top_k=3))
            prompts.append(output.prompt)
    except Exception as exc:  # no CLIP component, or its deployment down: plan without it
        logger.info("agentic: image-to-prompt unavailable: %s", exc)
        return (), [f"image-to-prompt: unavailable ({type(exc).__name__}); skipped"]
    return tuple(prompts), [f"image-to-prompt: {len(prompts)} reference(s) described"]


async def style_conditioning(
    state: KilnCore, spec: ModelSpec, images: list[np.ndarray] | None
) -> tuple[AdapterConditioning | None, str]:
    """The mean IP-Adapter embedding of the references, at ``STYLE_ADAPTER_SCALE``, where
    the model's family has an IP-Adapter; otherwise None and a note why."""
    component = state.catalog.first_component("ip_adapter", spec.family)
    if component is None:
        return None, "ip-adapter: none installed for this model's family; skipped"
    if images is None:
        return None, "ip-adapter: a saved recipe carries no images to embed; skipped"
    pixels = [await asyncio.to_thread(embed_input, image) for image in images]
    embeds = await state.models.embed_images(spec.id, component.id, pixels)
    mean = np.asarray(embeds, np.float32).mean(axis=0, keepdims=True)
    source = AdapterImage("references", mean, STYLE_ADAPTER_SCALE)
    note = (
        f"ip-adapter: {component.id}, mean embedding of {len(images)} reference(s) "
        f"at scale {STYLE_ADAPTER_SCALE}"
    )
    return AdapterConditioning(component.id, (source,)), note


class ServingAgentic:
    """``/v1/agentic/*`` against the model handles."""

    def __init__(self, state: KilnCore):
        self.state = state

    async def extract(
        self, request: AgenticExtractRequest, tenant: Tenant
    ) -> AgenticExtractResponse:
        started = time.perf_counter()
        choices = choices_of(request.components)
        check_choices(choices, len(request.references))  # before decoding anything
        images = await load_references(self.state, tenant, request.references)
        loaded = time.perf_counter()
        recipe = await asyncio.to_thread(extract_recipe, images, choices)
        done = time.perf_counter()
        return AgenticExtractResponse(
            recipe=recipe.to_json(),
            timings={"load": loaded - started, "extract": done - loaded, "total": done - started},
        )

    async def create(
        self, request: AgenticGenerationRequest, tenant: Tenant, request_id: str | None = None
    ) -> AgenticGenerationResponse:
        state = self.state
        settings = state.settings
        started = time.perf_counter()
        spec, budget, choices = check_request(request, state.catalog, settings)
        images: list[np.ndarray] | None = None
        if request.references is not None:
            images = await load_references(state, tenant, request.references)
            recipe = await asyncio.to_thread(extract_recipe, images, choices)
        else:
            recipe = await asyncio.to_thread(checked_recipe, request.recipe, choices, settings)
        controlnet = state.catalog.first_component("controlnet", spec.family)
        agent_request = AgentRequest(
            prompt=request.prompt,
            n=request.n,
            negative_prompt=request.negative_prompt,
            seed=request.seed,
            steps=request.steps,
            guidance=request.guidance,
            resolution=request.resolution,
            aspect_ratio=request.aspect_ratio,
            controlnet=controlnet.id if controlnet else None,
        )
        loop = asyncio.get_running_loop()

        def generate(params: Any) -> list[np.ndarray]:
            # The agent runs in a worker thread; the model client lives on the loop.
            output = asyncio.run_coroutine_threadsafe(state.models.generate(params), loop).result()
            state.metrics.images.labels(params.model).inc(len(output.images))
            return list(output.images)

        agent = Agent(spec, recipe, generate, images, settings.generation_defaults)
        # Size and task problems surface before any credit is held.
        await asyncio.to_thread(agent.check, agent_request, budget)
        generation_id = f"agen_{uuid.uuid4().hex}"
        price = state.catalog.price_of(OPERATION)
        async with (
            state.limiter.slot(tenant.id),
            reserve(state.ledger, tenant.id, price, 1, request_id) as charge,
        ):
            notes = [
                f"structure: ControlNet {controlnet.id}"
                if controlnet
                else "structure: no ControlNet for this model; img2img from the layout"
            ]
            prompts: tuple[str, ...] = ()
            if images is not None:
                prompts, prompt_notes = await reference_prompts(state, images, recipe)
                notes += prompt_notes
            adapter, adapter_note = await style_conditioning(state, spec, images)
            notes.append(adapter_note)
            agent_request = replace(
                agent_request, reference_prompts=prompts, adapter=adapter, notes=tuple(notes)
            )
            result = await asyncio.to_thread(agent.run, agent_request, budget)
            t0 = time.perf_counter()
            delivered = await asyncio.to_thread(
                self._deliver,
                tenant,
                spec,
                agent_request,
                result,
                generation_id,
                recipe if request.grading_lut else None,
            )
            deliver_s = time.perf_counter() - t0
            await charge.capture(1)
        state.retention.maybe_start()
        plan = {k: v for k, v in result.plan.items() if k != "structure_pixels"}
        return AgenticGenerationResponse(
            id=generation_id,
            created=int(time.time()),
            model=spec.id,
            data=delivered,
            recipe=recipe.to_json(),
            plan=plan,
            trace=result.trace,
            credits_charged=charge.charged,
            timings={"deliver": deliver_s, "server_total": time.perf_counter() - started},
        )

    def _deliver(
        self,
        tenant: Tenant,
        spec: ModelSpec,
        request: AgentRequest,
        result: AgentResult,
        generation_id: str,
        lut_recipe: Recipe | None = None,
    ) -> list[AgenticImage]:
        """Store every kept image as a free ``agentic`` asset (with its grading as a
        ``.cube`` LUT when ``lut_recipe`` is given). Blocking."""
        plan = result.plan
        delivered = []
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
            )
            asset, finished = self.state.assets.create(tenant.id, record, candidate.pixels)
            delivered.append(
                AgenticImage(
                    asset_id=asset.id,
                    b64_json=b64(finished.delivered),
                    seed=candidate.seed,
                    width=width,
                    height=height,
                    scores=candidate.scores.to_json(),
                    knobs=candidate.knobs,
                    grading_cube=grading_cube(candidate, lut_recipe) if lut_recipe else None,
                )
            )
        return delivered
