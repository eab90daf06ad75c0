"""What an agentic request is refused for before the tenant's images or credits are
touched: the prompts, the base model, the budget, references xor recipe, the components'
choices (``check_agentic``), and a client's saved recipe (``checked_recipe``). The use
case and ``kiln batch`` (before anything runs) check the same way, with the same
messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from agentic.agent import Budget, check_budget
from agentic.composition import thumbnail_png
from agentic.recipe import Choice, Recipe, check_choices
from pipelines.params import ParamError
from serving.core.agentic.orders import AgenticOrder
from serving.core.features import require_feature
from serving.core.generations.params import check_prompt
from serving.core.image_inputs import decode_b64_image
from serving.core.settings import Settings
from weights.catalog import Catalog, ModelKind, ModelSpec

DEFAULT_CANDIDATES = 2
DEFAULT_ROUNDS = 1


def base_model(catalog: Catalog, model: str | None) -> ModelSpec:
    """The requested base model (404 unknown, 400 not a base model), or the first one."""
    if model is None:
        bases = [spec for spec in catalog if spec.kind == ModelKind.BASE]
        if not bases:
            raise ParamError("model", "the catalog has no base model")
        return bases[0]
    spec = catalog.get(model)
    if spec.kind != ModelKind.BASE:
        raise ParamError("model", f"model {model!r} is not a base model")
    require_feature(catalog, spec, "agentic", "model")
    return spec


def budget_of(order: AgenticOrder, settings: Settings) -> Budget:
    """The order's budget within the server's bounds (400 outside them)."""
    candidates = DEFAULT_CANDIDATES if order.candidates is None else order.candidates
    rounds = DEFAULT_ROUNDS if order.rounds is None else order.rounds
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
    check_budget(order.n, budget)
    return budget


def check_agentic(
    order: AgenticOrder, catalog: Catalog, settings: Settings
) -> tuple[ModelSpec, Budget]:
    """What ``Agentic.create`` refuses before reserving, tenant aside (``kiln batch``
    checks its lines so before anything runs): the prompts, the base model, the budget,
    references xor recipe, the components' choices. Returns the model and the budget. A
    saved recipe's thumbnails are ``checked_recipe``'s (they decode images)."""
    check_prompt(order.prompt, "prompt", settings.max_prompt_chars)
    check_prompt(order.negative_prompt, "negative_prompt", settings.max_prompt_chars)
    if not order.prompt.strip():
        raise ParamError("prompt", "prompt must not be empty")
    spec = base_model(catalog, order.model)
    budget = budget_of(order, settings)
    if (order.references is None) == (order.recipe is None):
        raise ParamError("references", "give exactly one of references and recipe")
    if order.references is not None:
        check_choices(order.components, len(order.references))  # before decoding anything
    return spec, budget


def checked_recipe(raw: Any, choices: Mapping[str, Choice], settings: Settings) -> Recipe:
    """A client's saved recipe: its shape (400 on ``recipe``), then each reference's
    ``composition.thumbnail_png`` decoded within the input-image limits (400/413 naming
    it) and re-encoded at the recipe's thumbnail size, so the agent never decodes a
    client's bytes. Blocking (decodes images)."""
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
