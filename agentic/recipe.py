"""A recipe: the style components of 1-10 references, blended by the user's choices.

Extraction measures every component of every reference once (``ReferenceFeatures``);
the recipe keeps those measurements, so a saved recipe can be re-blended with other
sources and strengths without its images. For each component the recipe holds its
target (the weighted blend of its sources), the sources with their weights, the user's
strength and the references down-weighted as outliers.

Outliers: among three or more sources, a reference whose median distance to the others
in that component is over ``OUTLIER_RATIO`` times the sources' median (and over the
component's floor, so near-identical references never trip it) gets its weight
multiplied by ``OUTLIER_WEIGHT``. Two sources cannot outvote each other: no outliers.

Source indices are 0-based positions in the request's ``references`` list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agentic.colour import downsample
from agentic.composition import (
    Composition,
    blend_compositions,
    composition_similarity,
    extract_composition,
)
from agentic.grading import Grading, blend_gradings, extract_grading, grading_distance
from agentic.lighting import Lighting, blend_lightings, extract_lighting, lighting_vector
from agentic.palette import Swatch, blend_palettes, extract_palette, palette_distance
from pipelines.params import ParamError

COMPONENTS = ("palette", "grading", "lighting", "composition")
MAX_REFERENCES = 10
RECIPE_VERSION = 1
# Strength of each component when the request does not say (0 leaves it out).
DEFAULT_STRENGTHS = {"palette": 0.6, "grading": 0.8, "lighting": 0.5, "composition": 0.5}
OUTLIER_RATIO = 2.0
OUTLIER_WEIGHT = 0.2
# Below these distances references agree whatever the ratio says (ΔE, Lab W2, ×100 units).
OUTLIER_FLOOR = {"palette": 10.0, "grading": 10.0, "lighting": 10.0, "composition": 20.0}


@dataclass(frozen=True)
class ReferenceFeatures:
    """Every component measured on one reference."""

    palette: list[Swatch]
    grading: Grading
    lighting: Lighting
    composition: Composition
    width: int = 0
    height: int = 0

    def to_json(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "palette": [s.to_json() for s in self.palette],
            "grading": self.grading.to_json(),
            "lighting": self.lighting.to_json(),
            "composition": self.composition.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReferenceFeatures:
        return cls(
            [Swatch.from_json(s) for s in data["palette"]],
            Grading.from_json(data["grading"]),
            Lighting.from_json(data["lighting"]),
            Composition.from_json(data["composition"]),
            int(data.get("width", 0)),
            int(data.get("height", 0)),
        )


def extract_features(pixels: np.ndarray) -> ReferenceFeatures:
    """Measure all four components of one uint8 RGB reference.

    The palette, lighting and composition work at ``WORK_SIDE`` px or less, so the
    reference is downsampled once for them instead of once per extractor (a 1024 px
    photograph: 4x less resizing). The grading reads its statistics off a point sample
    of the full image instead: area-averaging shrinks the spread it measures."""
    height, width = pixels.shape[:2]
    small = downsample(pixels)
    return ReferenceFeatures(
        palette=extract_palette(small),
        grading=extract_grading(pixels),
        lighting=extract_lighting(small),
        composition=extract_composition(small),
        width=int(width),
        height=int(height),
    )


# Component -> (distance between two references' measurements, blend of measurements).
def _lighting_distance(a: Lighting, b: Lighting) -> float:
    return float(np.linalg.norm(lighting_vector(a) - lighting_vector(b)) * 100.0)


def _composition_distance(a: Composition, b: Composition) -> float:
    return (1.0 - composition_similarity(a, b)) * 100.0


DISTANCES: dict[str, Callable[[Any, Any], float]] = {
    "palette": palette_distance,
    "grading": grading_distance,
    "lighting": _lighting_distance,
    "composition": _composition_distance,
}
BLENDS: dict[str, Callable[[list, list[float]], Any]] = {
    "palette": blend_palettes,
    "grading": blend_gradings,
    "lighting": blend_lightings,
    "composition": blend_compositions,
}


@dataclass(frozen=True)
class Choice:
    """The user's pick for one component: reference indices (None: all) and a strength."""

    sources: tuple[int, ...] | None = None
    strength: float | None = None


@dataclass(frozen=True)
class ComponentRecipe:
    """One component of a recipe: its blended target and how it was made."""

    name: str
    target: Any
    weights: dict[int, float]  # source index -> normalised weight
    strength: float
    outliers: list[dict] = field(default_factory=list)

    @property
    def sources(self) -> tuple[int, ...]:
        return tuple(self.weights)

    def to_json(self) -> dict:
        target = self.target
        return {
            "target": [s.to_json() for s in target] if self.name == "palette" else target.to_json(),
            "sources": [{"index": i, "weight": round(w, 4)} for i, w in self.weights.items()],
            "strength": self.strength,
            "outliers": self.outliers,
        }


@dataclass(frozen=True)
class Recipe:
    """Per-reference measurements and the blended components."""

    references: list[ReferenceFeatures]
    components: dict[str, ComponentRecipe]

    def to_json(self) -> dict:
        return {
            "version": RECIPE_VERSION,
            "references": [r.to_json() for r in self.references],
            "components": {name: c.to_json() for name, c in self.components.items()},
        }

    def choices(self) -> dict[str, Choice]:
        """The sources and strengths this recipe was blended with."""
        return {n: Choice(c.sources, c.strength) for n, c in self.components.items()}

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], choices: Mapping[str, Choice] | None = None
    ) -> Recipe:
        """A saved (possibly edited) recipe, re-blended from its references' measurements
        with its own sources and strengths, overridden by ``choices``."""
        try:
            references = [ReferenceFeatures.from_json(r) for r in data["references"]]
            saved = data.get("components", {})
            if not isinstance(saved, Mapping):
                raise TypeError("components is an object")
            _check_names(saved, "recipe.components")
            own = {
                name: Choice(
                    tuple(int(s["index"]) for s in c["sources"]) if "sources" in c else None,
                    float(c["strength"]) if "strength" in c else None,
                )
                for name, c in saved.items()
            }
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ParamError("recipe", f"recipe is not a Kiln agentic recipe: {exc}") from None
        _check_count(len(references), "recipe.references")
        # The request's choices override the saved ones field by field.
        merged = dict(own)
        for name, choice in (choices or {}).items():
            saved_choice = own.get(name, Choice())
            merged[name] = Choice(
                choice.sources if choice.sources is not None else saved_choice.sources,
                choice.strength if choice.strength is not None else saved_choice.strength,
            )
        return build_recipe(references, merged)


def _check_count(count: int, param: str) -> None:
    if not 1 <= count <= MAX_REFERENCES:
        raise ParamError(param, f"give 1 to {MAX_REFERENCES} references, got {count}")


def _check_names(names: Mapping[str, Any], param: str) -> None:
    unknown = sorted(set(names) - set(COMPONENTS))
    if unknown:
        raise ParamError(
            param, f"unknown component(s) {', '.join(unknown)}; known: {', '.join(COMPONENTS)}"
        )


def check_choices(choices: Mapping[str, Choice], count: int) -> None:
    """400s for unknown components, indices out of range and strengths outside [0, 1]."""
    _check_names(choices, "components")
    for name, choice in choices.items():
        if choice.sources is not None:
            if not choice.sources:
                raise ParamError(f"components.{name}.sources", "give at least one source")
            bad = [i for i in choice.sources if not 0 <= i < count]
            if bad:
                raise ParamError(
                    f"components.{name}.sources",
                    f"source index {bad[0]} is out of range: there are {count} references "
                    f"(indices 0-{count - 1})",
                )
        if choice.strength is not None and not 0.0 <= choice.strength <= 1.0:
            raise ParamError(
                f"components.{name}.strength", f"strength must be in [0, 1], got {choice.strength}"
            )


def _weights(name: str, values: list[Any], sources: list[int]) -> tuple[dict[int, float], list]:
    weights = dict.fromkeys(sources, 1.0)
    outliers = []
    if len(sources) >= 3:
        distance = DISTANCES[name]
        matrix = np.zeros((len(sources), len(sources)))
        for a in range(len(sources)):
            for b in range(a + 1, len(sources)):
                matrix[a, b] = matrix[b, a] = distance(values[a], values[b])
        typical = [float(np.median(np.delete(matrix[a], a))) for a in range(len(sources))]
        median = float(np.median(typical))
        for a, index in enumerate(sources):
            if typical[a] > OUTLIER_RATIO * median and typical[a] > OUTLIER_FLOOR[name]:
                weights[index] *= OUTLIER_WEIGHT
                outliers.append(
                    {
                        "index": index,
                        "distance": round(typical[a], 3),
                        "median_distance": round(median, 3),
                        "weight_factor": OUTLIER_WEIGHT,
                    }
                )
    total = sum(weights.values())
    return {i: w / total for i, w in weights.items()}, outliers


def build_recipe(
    references: list[ReferenceFeatures], choices: Mapping[str, Choice] | None = None
) -> Recipe:
    """Blend each component from its chosen sources (all by default) at its strength."""
    _check_count(len(references), "references")
    choices = dict(choices or {})
    check_choices(choices, len(references))
    components = {}
    for name in COMPONENTS:
        choice = choices.get(name, Choice())
        sources = (
            list(dict.fromkeys(choice.sources)) if choice.sources else list(range(len(references)))
        )
        values = [getattr(references[i], name) for i in sources]
        weights, outliers = _weights(name, values, sources)
        target = BLENDS[name](values, [weights[i] for i in sources])
        strength = DEFAULT_STRENGTHS[name] if choice.strength is None else float(choice.strength)
        components[name] = ComponentRecipe(name, target, weights, strength, outliers)
    return Recipe(references, components)


def extract_recipe(images: list[np.ndarray], choices: Mapping[str, Choice] | None = None) -> Recipe:
    """Extract 1-10 uint8 RGB references and blend them (``choices`` checked first)."""
    _check_count(len(images), "references")
    check_choices(dict(choices or {}), len(images))
    return build_recipe([extract_features(image) for image in images], choices)
