"""Wire shapes of ``GET /v1/models``: OpenAI's model object plus what a prompt bar shows."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from pipelines.families import family_of
from pipelines.params import GenerationDefaults
from weights.catalog import ModelSpec


class ModelDefaults(BaseModel):
    """What a request gets when it leaves a field out (server settings, then the model)."""

    resolution: str
    aspect_ratio: str
    size: str
    steps: int
    guidance: float
    scheduler: str


class ModelTerms(BaseModel):
    """The model provider's stated terms, as the catalog entry records them (``license_id``
    ``unspecified`` and both flags false where the entry names none); not legal advice."""

    license_id: str
    license_url: str | None
    commercial_model_use: bool = Field(description="the provider allows commercial serving")
    commercial_outputs: bool = Field(description="its images may be used commercially")


class ModelCard(BaseModel):
    """One model. ``id``/``object``/``created``/``owned_by`` keep OpenAI clients happy."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "kiln"
    kind: str
    family: str
    features: list[str]
    resolutions: dict[str, int]
    aspect_ratios: list[str]
    sizes: list[str]
    prices: dict[str, float]
    defaults: ModelDefaults
    # How the model takes ``guidance``: ``cfg`` (a scale, two forwards a step),
    # ``embedded`` (a conditioning value: FLUX.1 [dev]) or ``none`` (a 400 if given).
    guidance_kind: str
    # The scheduler names a request may give.
    schedulers: list[str]
    # Prompt tokens the text encoder takes (T5, Qwen3; longer is a 400 naming ``prompt``);
    # null where the encoder has windows and takes any length (CLIP).
    max_sequence_length: int | None = None
    # The provider's terms for the weights; every asset of the model records them.
    terms: ModelTerms

    @classmethod
    def from_spec(
        cls, spec: ModelSpec, server: GenerationDefaults, features: tuple[str, ...] = ()
    ) -> ModelCard:
        """The card of a catalog entry, with the defaults a request would really get and
        the ``features`` available with what is installed (``Catalog.features_of``)."""
        aspect = spec.aspect_ratios[0]
        width, height = spec.size(spec.default_resolution, aspect)
        effective = server.resolved(spec)
        family = family_of(spec.family)
        return cls(
            id=spec.id,
            kind=spec.kind,
            family=spec.family,
            features=list(features or spec.features),
            resolutions=dict(spec.resolutions),
            aspect_ratios=list(spec.aspect_ratios),
            sizes=list(spec.sizes),
            prices=dict(spec.credits),
            defaults=ModelDefaults(
                resolution=spec.default_resolution,
                aspect_ratio=aspect,
                size=f"{width}x{height}",
                steps=effective.steps,
                guidance=effective.guidance,
                scheduler=effective.scheduler,
            ),
            guidance_kind=family.guidance_of(spec),
            schedulers=list(family.schedulers_of(spec)),
            max_sequence_length=family.sequence_length_of(spec),
            terms=ModelTerms(**spec.terms.as_dict()),
        )


class ModelList(BaseModel):
    """OpenAI's list envelope."""

    object: Literal["list"] = "list"
    data: list[ModelCard]
