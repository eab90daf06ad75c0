"""The agent: plan -> act -> critique -> refine, within a budget.

It drives generation through a ``generate`` callable (``GenerationParams`` -> uint8
images) so it knows nothing of where the model runs: serving/ backs it with the base
model's deployment, tests with a tiny in-process engine.

- plan: the prompt (the user's words, then the references' image-to-prompt text where
  the caller had that feature), the IP-Adapter conditioning the caller built (mean of the
  references' embeddings, where installed), and structure guidance from the composition's
  heaviest source: a ControlNet on its edges where the caller names one, else img2img
  from its blurred layout. Composition strength s maps to ControlNet scale s, or to an
  img2img denoising strength of 1 - 0.6 s; strength 0 is plain text-to-image.
- act: ``candidates`` images per requested image in one call, finished by the lighting,
  grading and palette transfers at their strengths (``agentic.finishing``).
- critique: score every candidate (agentic.critique), keep the best ``n``.
- refine: for the worst-scoring component, change what drives it: a transfer strength
  (palette, grading, lighting: raised toward 1 and re-applied to the kept candidates'
  raw images, no new generation); the structure guidance (composition: strength up, or,
  at its maximum, a lower guidance scale where the model takes guidance: not FLUX.1
  [schnell] or a step-distilled [klein], which the model's family says); a new seed once
  a driver is at its limit.
  A candidate replaces a kept one only if its total improves, so no round lowers the
  best score. The strengths the user asked for are starting points refinement may raise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from agentic.composition import structure_image, thumbnail_pixels
from agentic.critique import Scores, score
from agentic.finishing import TRANSFERS, finish
from agentic.grading import cube_lut
from agentic.lighting import relight
from agentic.recipe import Recipe
from pipelines.families import GuidanceKind, family_of
from pipelines.params import (
    MAX_IMAGES,
    MAX_SEED,
    AdapterConditioning,
    ControlRef,
    GenerationDefaults,
    GenerationParams,
    ImageData,
    ParamError,
    Task,
    expand_seeds,
    resolve_size,
)
from pipelines.tasks import ControlNet, ImageToImage
from weights.catalog import ModelSpec

logger = logging.getLogger(__name__)

GenerateFn = Callable[[GenerationParams], list[np.ndarray]]
IMG2IMG_SPAN = 0.6  # composition strength 1 -> img2img denoising strength 0.4
STRENGTH_STEP = 0.25
GUIDANCE_FACTOR = 0.75
LUT_SIZE = 17  # points per axis of an exported .cube (17 and 33 are the common sizes)


@dataclass(frozen=True)
class Budget:
    """Candidates generated per requested image, and refinement rounds."""

    candidates: int = 2
    rounds: int = 1


@dataclass(frozen=True)
class AgentRequest:
    """What the user asked, resolved by the caller."""

    prompt: str
    n: int = 1
    negative_prompt: str | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    resolution: str | None = None
    aspect_ratio: str | None = None
    # Image-to-prompt text of the references, where the caller has that feature.
    reference_prompts: tuple[str, ...] = ()
    # IP-Adapter conditioning (mean reference embedding), where installed.
    adapter: AdapterConditioning | None = None
    # The ControlNet component for structure guidance, where the catalog has one.
    controlnet: str | None = None
    notes: tuple[str, ...] = ()  # what the caller skipped and why, for the trace


@dataclass
class Candidate:
    """One generated image: raw pixels, seed, the knobs it was finished with, and after."""

    raw: np.ndarray
    seed: int
    knobs: dict[str, float]
    pixels: np.ndarray
    scores: Scores


@dataclass
class AgentResult:
    """The kept images (best first), the plan and every step taken."""

    images: list[Candidate]
    plan: dict[str, Any]
    trace: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best_score(self) -> float:
        return max(c.scores.total for c in self.images)


def check_budget(n: int, budget: Budget) -> None:
    """400 unless the first call's ``n x candidates`` images fit one pipeline call."""
    total = n * budget.candidates
    if total > MAX_IMAGES:
        raise ParamError(
            "candidates", f"n x candidates must be at most {MAX_IMAGES} (one call), got {total}"
        )


def grading_cube(candidate: Candidate, recipe: Recipe, size: int = LUT_SIZE) -> str:
    """The grading step applied to ``candidate`` as a ``.cube`` 3D LUT: the transfer from
    its relit raw image to the recipe's grading at its strength (without the palette
    step, which a colourist's grade does not have), to apply the look elsewhere."""
    targets = recipe.components
    relit = relight(candidate.raw, targets["lighting"].target, candidate.knobs["lighting"])
    return cube_lut(
        relit,
        targets["grading"].target,
        size=size,
        strength=candidate.knobs["grading"],
        title=f"Kiln agentic grading, seed {candidate.seed}",
    )


class Agent:
    """One agentic generation on ``spec`` through ``generate``."""

    def __init__(
        self,
        spec: ModelSpec,
        recipe: Recipe,
        generate: GenerateFn,
        reference_pixels: list[np.ndarray] | None = None,
        defaults: GenerationDefaults | None = None,
    ) -> None:
        self.spec = spec
        self.recipe = recipe
        self.generate_fn = generate
        self.reference_pixels = reference_pixels
        self.defaults = defaults or GenerationDefaults()
        self.trace: list[dict[str, Any]] = []
        # Whether refinement may lower the guidance (a model without any refuses one).
        self.takes_guidance = family_of(spec.family).guidance_of(spec) is not GuidanceKind.NONE

    def run(self, request: AgentRequest, budget: Budget) -> AgentResult:
        """plan, act, critique, then refine while the budget lasts."""
        check_budget(request.n, budget)
        total = request.n * budget.candidates
        plan = self.plan(request)
        seed = request.seed if request.seed is not None else expand_seeds(None, 1)[0]
        knobs = dict(plan["knobs"])
        fresh = self.act(request, plan, knobs, seed, total)
        kept = self.critique(fresh, request.n)
        for round_ in range(budget.rounds):
            seed = (seed + total) % (MAX_SEED + 1)
            kept, knobs = self.refine(round_ + 1, request, plan, kept, knobs, seed, total)
        return AgentResult(kept, plan, self.trace)

    def _log(self, step: str, started: float, **detail: Any) -> None:
        entry = {"step": step, **detail, "seconds": round(time.perf_counter() - started, 4)}
        self.trace.append(entry)
        logger.debug("agentic %s", entry)

    def check(self, request: AgentRequest, budget: Budget) -> None:
        """Raise the ``ParamError`` a run would (budget, size, steps, task) without
        generating anything: callers check before they charge."""
        check_budget(request.n, budget)
        self.first_params(request)

    def first_params(self, request: AgentRequest) -> GenerationParams:
        """The parameters of a run's first call, one image (its prompt is the plan's: the
        user's words and the references' image-to-prompt text): what a caller asks the
        model's encoder to count before it charges."""
        return self._params(request, self._make_plan(request), 0, 1)

    def plan(self, request: AgentRequest) -> dict[str, Any]:
        started = time.perf_counter()
        plan = self._make_plan(request)
        extras = [p for p in dict.fromkeys(request.reference_prompts) if p.strip()]
        self._log(
            "plan",
            started,
            **{k: v for k, v in plan.items() if k != "structure_pixels"},
            notes=list(request.notes),
            reference_prompts=extras,
        )
        return plan

    def _make_plan(self, request: AgentRequest) -> dict[str, Any]:
        components = self.recipe.components
        extras = [p for p in dict.fromkeys(request.reference_prompts) if p.strip()]
        prompt = ", ".join([request.prompt, *extras])
        _, width, height = resolve_size(self.spec, request.resolution, request.aspect_ratio)
        structure = components["composition"].strength
        plan: dict[str, Any] = {
            "prompt": prompt,
            "model": self.spec.id,
            "width": width,
            "height": height,
            "knobs": {name: components[name].strength for name in TRANSFERS},
            "structure": structure,
            "guidance": request.guidance,
            "ip_adapter": request.adapter.component if request.adapter else None,
            "structure_source": None,
            "task": Task.TEXT_TO_IMAGE,
        }
        if structure > 0.0:
            source = components["composition"]
            heaviest = max(source.weights, key=source.weights.__getitem__)
            if self.reference_pixels is not None:
                pixels = self.reference_pixels[heaviest]
                plan["structure_source"] = f"reference {heaviest}"
            else:
                pixels = thumbnail_pixels(source.target.thumbnail)
                plan["structure_source"] = f"recipe thumbnail of reference {heaviest}"
            plan["structure_pixels"] = pixels
            plan["task"] = Task.CONTROLNET if request.controlnet else Task.IMAGE_TO_IMAGE
            plan["controlnet"] = request.controlnet
        return plan

    def _params(
        self, request: AgentRequest, plan: dict[str, Any], seed: int, count: int
    ) -> GenerationParams:
        width, height = plan["width"], plan["height"]
        common = dict(
            prompt=plan["prompt"],
            negative_prompt=request.negative_prompt,
            n=count,
            resolution=request.resolution,
            aspect_ratio=request.aspect_ratio,
            seed=seed,
            steps=request.steps,
            guidance=plan["guidance"],
            defaults=self.defaults,
            adapter=request.adapter,
        )
        structure = plan["structure"]
        if plan["task"] == Task.CONTROLNET:
            image = structure_image(plan["structure_pixels"], width, height, for_controlnet=True)
            control = ControlRef(plan["controlnet"], ImageData(image), float(structure))
            return GenerationParams.build(self.spec, task=ControlNet(control), **common)
        if plan["task"] == Task.IMAGE_TO_IMAGE:
            image = structure_image(plan["structure_pixels"], width, height, for_controlnet=False)
            # At least one denoising step, whatever the structure strength.
            strength = max(1.0 - IMG2IMG_SPAN * structure, 1.0 / self._steps(request))
            return GenerationParams.build(
                self.spec, task=ImageToImage(ImageData(image), strength), **common
            )
        return GenerationParams.build(self.spec, **common)

    def _guidance(self, plan: dict[str, Any]) -> float:
        guidance = plan["guidance"]
        return float(
            guidance if guidance is not None else self.defaults.resolved(self.spec).guidance
        )

    def _steps(self, request: AgentRequest) -> int:
        steps = request.steps
        return int(steps if steps is not None else self.defaults.resolved(self.spec).steps)

    def act(
        self,
        request: AgentRequest,
        plan: dict[str, Any],
        knobs: dict[str, float],
        seed: int,
        count: int,
    ) -> list[Candidate]:
        started = time.perf_counter()
        params = self._params(request, plan, seed, count)
        images = self.generate_fn(params)
        candidates = []
        for raw, image_seed in zip(images, params.seeds, strict=True):
            pixels = finish(raw, self.recipe, knobs)
            candidates.append(
                Candidate(raw, image_seed, dict(knobs), pixels, score(pixels, self.recipe))
            )
        self._log(
            "act",
            started,
            task=params.task.name,
            generated=len(candidates),
            seed=seed,
            steps=params.steps,
            guidance=params.guidance,
            structure=plan["structure"],
            knobs=dict(knobs),
        )
        return candidates

    def critique(self, candidates: list[Candidate], n: int) -> list[Candidate]:
        started = time.perf_counter()
        ranked = sorted(candidates, key=lambda c: -c.scores.total)
        kept = ranked[:n]
        self._log(
            "critique",
            started,
            scores=[round(c.scores.total, 4) for c in ranked],
            kept=len(kept),
            best_score=round(kept[0].scores.total, 4),
            component_means=_component_means(kept),
        )
        return kept

    def refine(
        self,
        round_: int,
        request: AgentRequest,
        plan: dict[str, Any],
        kept: list[Candidate],
        knobs: dict[str, float],
        seed: int,
        count: int,
    ) -> tuple[list[Candidate], dict[str, float]]:
        started = time.perf_counter()
        before = max(c.scores.total for c in kept)
        means = _component_means(kept)
        worst = min(means, key=means.__getitem__)
        change: dict[str, Any] = {"component": worst}
        new_knobs = dict(knobs)
        new_plan = dict(plan)
        if worst in TRANSFERS and knobs[worst] < 1.0:
            # A post-processing driver: re-finish the kept raw images, no generation.
            new_knobs[worst] = min(1.0, knobs[worst] + max(STRENGTH_STEP, (1 - knobs[worst]) / 2))
            change.update(
                driver=f"{worst} transfer strength", old=knobs[worst], new=new_knobs[worst]
            )
            proposals = [
                replace(c, knobs=dict(new_knobs), pixels=finish(c.raw, self.recipe, new_knobs))
                for c in kept
            ]
            for proposal in proposals:
                proposal.scores = score(proposal.pixels, self.recipe)
            pairs = list(zip(kept, proposals, strict=True))
        else:
            # A generation driver: structure strength, then guidance, else a new seed.
            structured = worst == "composition" and plan["task"] != Task.TEXT_TO_IMAGE
            if structured and plan["structure"] < 1.0:
                new_plan["structure"] = min(1.0, plan["structure"] + STRENGTH_STEP)
                change.update(
                    driver="structure guidance", old=plan["structure"], new=new_plan["structure"]
                )
            elif structured and self.takes_guidance:
                guidance = self._guidance(plan)
                new_plan["guidance"] = round(guidance * GUIDANCE_FACTOR, 3)
                change.update(driver="guidance scale", old=guidance, new=new_plan["guidance"])
            else:
                change.update(driver="seed", old=None, new=seed)
            fresh = self.act(request, new_plan, new_knobs, seed, count)
            ranked = sorted(fresh, key=lambda c: -c.scores.total)
            # The best new candidates challenge the worst kept ones, one to one.
            pairs = list(zip(sorted(kept, key=lambda c: c.scores.total), ranked, strict=False))
        result = {id(c): c for c in kept}
        replaced = 0
        for old, new in pairs:
            if new.scores.total > old.scores.total:
                del result[id(old)]
                result[id(new)] = new
                replaced += 1
        kept = sorted(result.values(), key=lambda c: -c.scores.total)
        if replaced:  # the change helped: later rounds start from it
            knobs = new_knobs
            plan.update(structure=new_plan["structure"], guidance=new_plan["guidance"])
        after = max(c.scores.total for c in kept)
        self._log(
            "refine",
            started,
            round=round_,
            **change,
            component_means_before=means,
            replaced=replaced,
            best_score_before=round(before, 4),
            best_score_after=round(after, 4),
        )
        return kept, knobs


def _component_means(candidates: list[Candidate]) -> dict[str, float]:
    names = candidates[0].scores.components
    return {
        name: round(float(np.mean([c.scores.components[name] for c in candidates])), 4)
        for name in names
    }
