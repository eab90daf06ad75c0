"""What the agentic use case answers, typed: an extract's recipe, and beside a
generation's delivered images (``ImageResult.images``: asset rows and pixels) the
agent's own account of them (``AgenticDetail``). Encoding (the recipe's JSON in an
answer, base64) is the adapter's business."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentic.critique import Scores
from agentic.recipe import Recipe
from serving.core.paid_images import ImageResult


@dataclass(frozen=True)
class Extraction:
    """A recipe extracted from references, and where the time went (seconds: ``load``,
    ``extract``, ``total``)."""

    recipe: Recipe
    timings: dict[str, float]


@dataclass(frozen=True)
class KeptImage:
    """The agent's account of one kept image, in the order of the delivered images: its
    scores, the transfer strengths it was finished at and, where asked, its grading step
    as a ``.cube`` 3D LUT."""

    scores: Scores
    knobs: dict[str, float]
    grading_cube: str | None = None


@dataclass(frozen=True)
class AgenticDetail:
    """The model step's account of an agentic generation: the recipe it carried out, the
    plan (without its structure pixels), every step taken, and one ``KeptImage`` per
    delivered image."""

    recipe: Recipe
    plan: dict[str, Any]
    trace: list[dict[str, Any]]
    images: tuple[KeptImage, ...]


AgenticGeneration = ImageResult[AgenticDetail]
