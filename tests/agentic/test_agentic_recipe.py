"""Recipes: blending honours the chosen sources, outliers are down-weighted and reported,
a saved recipe re-blends without its images, and bad choices are refused by field."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage import data

from agentic.colour import downsample
from agentic.palette import palette_distance
from agentic.recipe import Choice, Recipe, build_recipe, extract_features, extract_recipe
from pipelines.params import ParamError


def flat(colour) -> np.ndarray:
    image = np.zeros((64, 64, 3), np.uint8)
    image[:] = colour
    image[20:44, 20:44] = (255 - np.array(colour)) // 2
    return image


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [downsample(f(), 128) for f in (data.astronaut, data.coffee, data.chelsea)]


def test_palette_from_one_source_matches_that_reference_not_the_other():
    red, blue = flat((200, 30, 30)), flat((30, 60, 210))
    recipe = extract_recipe([red, blue], {"palette": Choice(sources=(1,), strength=1.0)})
    target = recipe.components["palette"].target
    blue_palette = recipe.references[1].palette
    red_palette = recipe.references[0].palette
    assert palette_distance(target, blue_palette) < 1.0
    assert palette_distance(target, red_palette) > 20.0
    assert recipe.components["palette"].weights == {1: 1.0}
    # The other components still blend both.
    assert set(recipe.components["grading"].weights) == {0, 1}


def test_a_reference_far_from_the_others_is_down_weighted_and_reported(photos):
    odd = np.zeros((64, 64, 3), np.uint8)
    odd[:] = (0, 230, 0)
    recipe = extract_recipe([*photos, odd])
    palette = recipe.components["palette"]
    assert [o["index"] for o in palette.outliers] == [3]
    assert palette.weights[3] < palette.weights[0] / 4
    assert abs(sum(palette.weights.values()) - 1.0) < 1e-9
    as_json = recipe.to_json()["components"]["palette"]
    assert as_json["outliers"][0]["index"] == 3
    # Agreeing references: nobody is an outlier.
    assert extract_recipe(photos).components["palette"].outliers == []


def test_a_saved_recipe_round_trips_and_re_blends_without_images(photos):
    recipe = extract_recipe(photos, {"lighting": Choice(sources=(0, 2), strength=0.3)})
    saved = json.loads(json.dumps(recipe.to_json()))
    again = Recipe.from_json(saved)
    assert again.components["lighting"].sources == (0, 2)
    assert again.components["lighting"].strength == 0.3
    # Re-blended from the rounded measurements: the same targets to within rounding.
    assert (
        palette_distance(again.components["palette"].target, recipe.components["palette"].target)
        < 0.5
    )
    for name in ("grading", "lighting", "composition"):
        assert again.components[name].weights == pytest.approx(recipe.components[name].weights)
    reblended = Recipe.from_json(saved, {"palette": Choice(sources=(1,), strength=0.9)})
    assert reblended.components["palette"].weights == {1: 1.0}
    assert reblended.components["lighting"].sources == (0, 2)  # the saved choice stays
    # A strength alone keeps the saved sources.
    stronger = Recipe.from_json(saved, {"lighting": Choice(strength=0.9)})
    assert stronger.components["lighting"].sources == (0, 2)
    assert stronger.components["lighting"].strength == 0.9


@pytest.mark.parametrize(
    ("count", "choices", "param"),
    [
        (0, {}, "references"),
        (11, {}, "references"),
        (2, {"palette": Choice(sources=(2,))}, "components.palette.sources"),
        (2, {"palette": Choice(sources=(-1,))}, "components.palette.sources"),
        (2, {"grading": Choice(sources=())}, "components.grading.sources"),
        (2, {"lighting": Choice(strength=1.5)}, "components.lighting.strength"),
        (2, {"lighting": Choice(strength=-0.1)}, "components.lighting.strength"),
        (2, {"texture": Choice()}, "components"),
    ],
)
def test_bad_choices_are_refused_by_field(count, choices, param):
    image = flat((100, 100, 100))
    with pytest.raises(ParamError) as raised:
        extract_recipe([image] * count, choices)
    assert raised.value.param == param


def test_a_malformed_recipe_is_a_400_on_recipe():
    with pytest.raises(ParamError) as raised:
        Recipe.from_json({"references": [{"palette": []}]})
    assert raised.value.param == "recipe"
    features = extract_features(flat((10, 20, 30)))
    saved = build_recipe([features]).to_json()
    saved["components"]["mood"] = {}
    with pytest.raises(ParamError):
        Recipe.from_json(saved)


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (3, 3), (1, 300)])
def test_a_reference_of_a_few_pixels_gives_a_finite_recipe(shape):
    """A 1x1 reference (an icon, a colour chip) made a 500: OpenCV's k-means read its one
    pixel as three samples, and its covariance divided by zero (NaN in the JSON)."""
    chip = np.zeros((*shape, 3), np.uint8)
    chip[...] = (200, 60, 30)
    recipe = extract_recipe([chip, data.astronaut()])
    text = json.dumps(recipe.to_json(), allow_nan=False)  # no NaN or infinity anywhere
    alone = extract_recipe([chip]).to_json()
    (swatch, *_) = alone["references"][0]["palette"]
    assert swatch["hex"].lower() == "#c83c1e" and swatch["share"] == 1.0
    again = Recipe.from_json(json.loads(text))  # a saved recipe of it loads back
    assert json.dumps(again.to_json(), allow_nan=False)
