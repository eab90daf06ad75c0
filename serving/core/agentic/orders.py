"""What an agentic request asks, as the core takes it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentic.recipe import Choice
from serving.core.image_inputs import ImageSource


@dataclass(frozen=True)
class AgenticExtractOrder:
    """A recipe from 1-10 references, with the user's picks per component."""

    references: tuple[ImageSource, ...]
    components: Mapping[str, Choice] = field(default_factory=dict)


@dataclass(frozen=True)
class AgenticOrder:
    """Images carrying a recipe's components: from ``references`` (1-10) or a saved
    ``recipe`` (its JSON), exactly one of them. ``candidates`` and ``rounds`` are the
    budget (None: the defaults); ``grading_lut`` asks for each image's grading step as a
    ``.cube`` LUT."""

    prompt: str
    model: str | None = None
    references: tuple[ImageSource, ...] | None = None
    recipe: Mapping[str, Any] | None = None
    components: Mapping[str, Choice] = field(default_factory=dict)
    n: int = 1
    candidates: int | None = None
    rounds: int | None = None
    negative_prompt: str | None = None
    resolution: str | None = None
    aspect_ratio: str | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    grading_lut: bool = False
