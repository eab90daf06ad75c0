"""Critique: how well an image carries a recipe, per component and in total.

Each component scores 0-1 (1: a perfect match) from a distance with a stated scale:

- palette: ΔE2000 between matched swatches (``palette_distance``), exp(-d / 15);
- grading: 2-Wasserstein distance of the Lab statistics, exp(-d / 20);
- lighting: half the key (median L* difference, exp(-d / 15)), half the contrast
  (exp(-d / 0.08)), the two things a viewer reads first;
- composition: layout-map correlation times centroid closeness.

The total is the mean over the components the request uses (strength above 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agentic.composition import composition_similarity, extract_composition
from agentic.grading import extract_grading, grading_distance
from agentic.lighting import extract_lighting
from agentic.palette import extract_palette, palette_distance
from agentic.recipe import COMPONENTS, Recipe

PALETTE_SCALE = 15.0
GRADING_SCALE = 20.0
KEY_SCALE = 15.0
CONTRAST_SCALE = 0.08


@dataclass(frozen=True)
class Scores:
    """Per-component scores (0-1), the raw distances behind them, and the total."""

    components: dict[str, float]
    distances: dict[str, float]
    total: float

    def to_json(self) -> dict:
        return {
            "total": round(self.total, 4),
            "components": {k: round(v, 4) for k, v in self.components.items()},
            "distances": {k: round(v, 4) for k, v in self.distances.items()},
        }


def active_components(recipe: Recipe) -> list[str]:
    """The components a generation aims at: those with a strength above 0."""
    return [name for name in COMPONENTS if recipe.components[name].strength > 0.0]


def score(pixels: np.ndarray, recipe: Recipe) -> Scores:
    """Score uint8 RGB ``pixels`` against ``recipe``'s targets."""
    targets = {name: c.target for name, c in recipe.components.items()}
    active = active_components(recipe) or list(COMPONENTS)
    components: dict[str, float] = {}
    distances: dict[str, float] = {}
    if "palette" in active:
        d = palette_distance(targets["palette"], extract_palette(pixels))
        distances["palette_delta_e"] = d
        components["palette"] = math.exp(-d / PALETTE_SCALE)
    if "grading" in active:
        d = grading_distance(extract_grading(pixels), targets["grading"])
        distances["grading_w2"] = d
        components["grading"] = math.exp(-d / GRADING_SCALE)
    if "lighting" in active:
        own = extract_lighting(pixels)
        target = targets["lighting"]
        key = abs(own.median_l - target.median_l)
        contrast = abs(own.contrast - target.contrast)
        distances["lighting_median_l"] = key
        distances["lighting_contrast"] = contrast
        components["lighting"] = 0.5 * math.exp(-key / KEY_SCALE) + 0.5 * math.exp(
            -contrast / CONTRAST_SCALE
        )
    if "composition" in active:
        similarity = composition_similarity(extract_composition(pixels), targets["composition"])
        distances["composition_dissimilarity"] = 1.0 - similarity
        components["composition"] = similarity
    total = float(np.mean(list(components.values())))
    return Scores(components, distances, total)


def rank(candidates: list[np.ndarray], recipe: Recipe) -> list[tuple[int, Scores]]:
    """(index, scores) of every candidate, best total first."""
    scored = [(i, score(pixels, recipe)) for i, pixels in enumerate(candidates)]
    return sorted(scored, key=lambda pair: -pair[1].total)
