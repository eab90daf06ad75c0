"""Wire shapes of ``POST /v1/agentic/extract`` and ``POST /v1/agentic/generations``.

Component names, source indices and strengths are checked by ``agentic.recipe`` (400s
naming ``components.<name>.sources`` / ``.strength``), not by pydantic bounds, so the
same rules hold for a request and for an edited recipe. A request converts itself once
into the core's order (``to_order``); ``AgenticExtractResponse.of`` and
``AgenticGenerationResponse.of`` encode the core's results (the recipe's JSON, base64 PNG).
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentic.recipe import Choice
from pipelines.params import MAX_SEED
from serving.core.agentic.orders import AgenticExtractOrder, AgenticOrder
from serving.core.agentic.results import AgenticGeneration, Extraction, KeptImage
from serving.core.assets.delivery import Delivered
from serving.core.generations.params import MAX_STEPS
from serving.core.image_inputs import ImageSource
from serving.core.imaging import b64
from serving.http.priority import PriorityField


class AgenticReference(BaseModel):
    """One reference: base64 image bytes, or one of the caller's assets."""

    model_config = ConfigDict(extra="forbid")

    image: str | None = Field(None, description="base64 PNG/JPEG/WebP (or a data: URL)")
    asset_id: str | None = None

    def to_source(self) -> ImageSource:
        return ImageSource(self.image, self.asset_id)


class ComponentField(BaseModel):
    """The user's pick for one component: 0-based reference indices and a strength 0-1."""

    model_config = ConfigDict(extra="forbid")

    sources: list[int] | None = Field(None, description="reference indices (default: all)")
    strength: float | None = Field(None, description="0-1 (default: the component's)")

    def to_choice(self) -> Choice:
        return Choice(
            tuple(self.sources) if self.sources is not None else None,
            self.strength,
        )


def choices_of(components: dict[str, ComponentField]) -> dict[str, Choice]:
    return {name: field.to_choice() for name, field in components.items()}


class AgenticExtractRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    references: list[AgenticReference] = Field(description="1-10 reference images")
    components: dict[str, ComponentField] = Field(
        default_factory=dict, description="palette, grading, lighting, composition"
    )

    def to_order(self) -> AgenticExtractOrder:
        """The request as the core takes it."""
        return AgenticExtractOrder(
            tuple(reference.to_source() for reference in self.references),
            choices_of(self.components),
        )


class AgenticExtractResponse(BaseModel):
    recipe: dict[str, Any]
    timings: dict[str, float] = Field(default_factory=dict)

    @classmethod
    def of(cls, result: Extraction) -> AgenticExtractResponse:
        return cls(recipe=result.recipe.to_json(), timings=result.timings)


class AgenticGenerationRequest(PriorityField):
    """Exactly one of ``references`` (1-10) and a saved ``recipe``."""

    model_config = ConfigDict(extra="forbid")

    prompt: str
    model: str | None = Field(None, description="a base model (default: the catalog's first)")
    references: list[AgenticReference] | None = None
    recipe: dict[str, Any] | None = None
    components: dict[str, ComponentField] = Field(default_factory=dict)
    n: int = Field(1, ge=1, le=12, description="images kept (n x candidates <= 12)")
    candidates: int | None = Field(None, ge=1, description="candidates per kept image")
    rounds: int | None = Field(None, ge=0, description="refinement rounds")
    negative_prompt: str | None = None
    resolution: str | None = None
    aspect_ratio: str | None = None
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    steps: int | None = Field(None, ge=1, le=MAX_STEPS)
    guidance: float | None = Field(None, ge=0)
    grading_lut: bool = Field(
        False, description="return each image's grading step as a .cube 3D LUT (17 points)"
    )

    def to_order(self) -> AgenticOrder:
        """The request as the core takes it."""
        references = None
        if self.references is not None:
            references = tuple(reference.to_source() for reference in self.references)
        return AgenticOrder(
            prompt=self.prompt,
            model=self.model,
            references=references,
            recipe=self.recipe,
            components=choices_of(self.components),
            n=self.n,
            candidates=self.candidates,
            rounds=self.rounds,
            negative_prompt=self.negative_prompt,
            resolution=self.resolution,
            aspect_ratio=self.aspect_ratio,
            seed=self.seed,
            steps=self.steps,
            guidance=self.guidance,
            grading_lut=self.grading_lut,
        )


class AgenticImage(BaseModel):
    asset_id: str
    b64_json: str
    seed: int
    width: int
    height: int
    scores: dict[str, Any]
    knobs: dict[str, float] = Field(description="transfer strengths the image was finished at")
    grading_cube: str | None = Field(None, description="the grading step as a .cube 3D LUT")

    @classmethod
    def of(cls, delivered: Delivered, kept: KeptImage) -> AgenticImage:
        asset = delivered.asset
        return cls(
            asset_id=asset.id,
            b64_json=b64(delivered.png),
            seed=asset.seed,
            width=asset.width,
            height=asset.height,
            scores=kept.scores.to_json(),
            knobs=kept.knobs,
            grading_cube=kept.grading_cube,
        )


class AgenticGenerationResponse(BaseModel):
    id: str
    created: int
    model: str
    data: list[AgenticImage]
    recipe: dict[str, Any]
    plan: dict[str, Any]
    trace: list[dict[str, Any]]
    credits_charged: int
    timings: dict[str, float] = Field(default_factory=dict)

    @classmethod
    def of(cls, result: AgenticGeneration) -> AgenticGenerationResponse:
        detail = result.detail
        return cls(
            id=result.id,
            created=int(time.time()),
            model=result.model,
            data=[
                AgenticImage.of(delivered, kept)
                for delivered, kept in zip(result.images, detail.images, strict=True)
            ],
            recipe=detail.recipe.to_json(),
            plan=detail.plan,
            trace=detail.trace,
            credits_charged=result.credits_charged,
            timings=result.timings,
        )
