"""Wire shapes of ``POST /v1/agentic/extract`` and ``POST /v1/agentic/generations``.

Component names, source indices and strengths are checked by ``agentic.recipe`` (400s
naming ``components.<name>.sources`` / ``.strength``), not by pydantic bounds, so the
same rules hold for a request and for an edited recipe.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentic.recipe import Choice
from pipelines.params import MAX_SEED
from serving.core.generations.params import MAX_STEPS


class AgenticReference(BaseModel):
    """One reference: base64 image bytes, or one of the caller's assets."""

    model_config = ConfigDict(extra="forbid")

    image: str | None = Field(None, description="base64 PNG/JPEG/WebP (or a data: URL)")
    asset_id: str | None = None


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


class AgenticExtractResponse(BaseModel):
    recipe: dict[str, Any]
    timings: dict[str, float] = Field(default_factory=dict)


class AgenticGenerationRequest(BaseModel):
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


class AgenticImage(BaseModel):
    asset_id: str
    b64_json: str
    seed: int
    width: int
    height: int
    scores: dict[str, Any]
    knobs: dict[str, float] = Field(description="transfer strengths the image was finished at")
    grading_cube: str | None = Field(None, description="the grading step as a .cube 3D LUT")


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
