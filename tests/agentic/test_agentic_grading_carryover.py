"""Issue 17: agentic grading lands on a reference's Lab statistics, also on photographs
nobody tuned on. The tuning set (astronaut, coffee) is pinned here through the real agent
on tiny-sd15, as the API runs it, at 128 px and at 256 px, where the delivered image
carries the invisible mark (`benchmarks/agentic_grading.py` reports every other bundled
colour photograph); the pieces that made it carry over are pinned on their own.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skimage import data
from skimage.color import hsv2rgb

from agentic.agent import Agent, AgentRequest, Budget
from agentic.colour import rgb_to_lab
from agentic.finishing import finish
from agentic.gamut import roll_off
from agentic.grading import Grading, extract_grading, grading_distance, transfer
from agentic.measures import (
    clipped_share,
    lab_moments,
    mean_delta_e,
    moment_cut,
    skin_or_neutral,
)
from agentic.recipe import Choice, extract_recipe
from pipelines.finishing import FinishOptions, finish_image
from pipelines.watermark import provenance_payload

TUNING = ("astronaut", "coffee")
# 128 px: the tiny model's default, delivered unmarked; 256 px: the invisible mark applies.
SIZES = ("128px", "256px")
CASES = [(name, size) for size in SIZES for name in TUNING]
FULL = Choice(sources=(0,), strength=1.0)


@pytest.fixture(scope="module")
def runs(catalog) -> dict:
    """The issue's request per tuning photograph and size: grading and palette from it at
    strength 1 (lighting and composition at their defaults), seed 8, "a street at noon",
    the API's default budget; the kept candidate and its recipe."""
    from pipelines.engine import Engine

    spec = catalog.get("tiny-sd15")
    controlnet = catalog.first_component("controlnet", spec.family)
    engine = Engine.load(spec, device="cpu", components=(controlnet,))
    runs = {}
    for name, size in CASES:
        reference = getattr(data, name)()
        recipe = extract_recipe([reference], {"grading": FULL, "palette": FULL})
        agent = Agent(
            spec,
            recipe,
            lambda params: list(engine.generate([params])[0].images),
            reference_pixels=[reference],
        )
        request = AgentRequest(
            prompt="a street at noon", seed=8, resolution=size, controlnet=controlnet.id
        )
        kept = agent.run(request, Budget(candidates=2, rounds=1)).images[0]
        runs[name, size] = (kept, recipe, reference)
    return runs


def delivered(pixels: np.ndarray) -> np.ndarray:
    """``pixels`` finished as an agentic asset is (invisible mark, PNG), decoded back."""
    finished = finish_image(pixels, FinishOptions(payload=provenance_payload("issue 17")))
    return np.asarray(Image.open(io.BytesIO(finished.delivered)).convert("RGB"))


@pytest.mark.parametrize("name, size", CASES)
def test_full_strength_lands_on_the_reference_statistics(runs, name, size):
    kept, _, reference = runs[name, size]
    final = delivered(kept.pixels)
    assert final.shape[0] == int(size.removesuffix("px"))
    # Measured 99.8% and 99.9% at 128 px (before issue 17: 61% and 91%); 98.8% and 99.5%
    # marked at 256 px (94.9% and 95.7% under the library's dwtDct encoder).
    assert moment_cut(kept.raw, final, reference) >= 0.975
    assert mean_delta_e(final, reference) < 0.5


@pytest.mark.parametrize("name", TUNING)
def test_strength_moves_the_image_monotonically_from_plain_to_graded(runs, name):
    kept, recipe, reference = runs[name, "128px"]
    strengths = (0.25, 0.5, 0.75, 1.0)
    cuts = [
        moment_cut(
            kept.raw,
            finish(kept.raw, recipe, {**kept.knobs, "grading": s, "palette": s}),
            reference,
        )
        for s in strengths
    ]
    assert cuts == sorted(cuts), cuts
    # Half strength lands about halfway (measured 62% and 52%), well inside plain..full.
    assert 0.35 <= cuts[1] <= 0.75 and cuts[1] < cuts[-1] - 0.2, cuts


@pytest.mark.parametrize("name, size", CASES)
def test_the_delivered_image_clips_no_skin_or_neutral_pixels_the_plain_one_did_not(
    runs, name, size
):
    kept, _, _ = runs[name, size]
    final = delivered(kept.pixels)
    mask = skin_or_neutral(final) | skin_or_neutral(kept.raw)
    # Before issue 17: +27 points (astronaut) and +22 (coffee) at 128 px; at 256 px the
    # library's dwtDct encoder clipped again: +5.7 and +8.1.
    assert clipped_share(final, mask) <= clipped_share(kept.raw, mask) + 0.02


def test_the_palette_step_no_longer_undoes_the_grading(runs):
    kept, recipe, reference = runs["astronaut", "128px"]
    graded = finish(kept.raw, recipe, {**kept.knobs, "palette": 0.0})
    both = finish(kept.raw, recipe, kept.knobs)
    # The grading's landing runs after the palette: both land where grading alone does
    # (before issue 17 the palette step took astronaut from 96% back to 61%).
    assert (
        abs(moment_cut(kept.raw, both, reference) - moment_cut(kept.raw, graded, reference)) < 0.01
    )


def test_statistics_are_read_at_full_resolution_not_off_a_thumbnail():
    # A fine 1024 px checkerboard: an area-averaged 256 px thumbnail is flat grey.
    board = np.indices((1024, 1024)).sum(axis=0) % 2
    pixels = np.where(board[..., None] == 1, (230, 200, 150), (30, 40, 60)).astype(np.uint8)
    grading = extract_grading(pixels)
    truth = lab_moments(pixels)
    assert np.allclose(grading.mean, truth[:3], atol=0.5)
    assert np.allclose(np.sqrt(np.diag(grading.cov)), truth[3:], atol=0.5)


def test_a_flat_two_colour_poster_is_reached_by_its_shape_not_only_its_spread():
    poster = np.zeros((128, 128, 3), np.uint8)
    poster[:, :70] = (230, 30, 40)
    poster[:, 70:] = (20, 60, 200)
    source = np.asarray(data.astronaut()[::4, ::4])
    target = extract_grading(poster)
    moments_only = Grading(target.mean, target.cov, target.curves)  # a recipe saved before
    shaped, linear = (
        moment_cut(source, transfer(source, g), poster) for g in (target, moments_only)
    )
    # A linear map spreads a one-hump image along the red-blue line, much of it past the
    # sRGB cube; the shape step splits it into the two colours (measured 88% and 74%).
    assert shaped >= 0.85 and shaped > linear + 0.1, (shaped, linear)


def colour_wheel(side: int = 200) -> np.ndarray:
    """Hue round the centre, white in the middle to full saturation halfway out to black
    at the rim, black outside: like scikit-image's colorwheel, every pixel on the sRGB
    cube's surface (a channel at 0 or 255)."""
    y, x = (np.mgrid[0:side, 0:side] - (side - 1) / 2.0) / (side / 2.0)
    radius, hue = np.hypot(x, y), (np.arctan2(y, x) / (2.0 * np.pi)) % 1.0
    hsv = np.stack([hue, np.clip(2.0 * radius, 0, 1), np.clip(2.0 - 2.0 * radius, 0, 1)], -1)
    return np.round(hsv2rgb(hsv) * 255).astype(np.uint8)


def test_a_reference_on_the_surface_of_the_cube_is_reached_in_gamut():
    wheel = colour_wheel()
    source = np.asarray(data.astronaut()[::4, ::4])
    graded = transfer(source, extract_grading(wheel))
    # Carried in Lab alone, the transfer left colours outside the cube and bringing them
    # in cost saturation: 81.6% (colorwheel itself: 84%). The landing's shape in sRGB,
    # whose gamut is the cube, keeps them on its surface: measured 95.6%.
    assert moment_cut(source, graded, wheel) >= 0.93
    mask = skin_or_neutral(graded) | skin_or_neutral(source)
    assert clipped_share(graded, mask) <= clipped_share(source, mask) + 0.02


def test_a_grading_round_trips_through_json_and_old_recipes_still_load():
    grading = extract_grading(data.coffee())
    again = Grading.from_json(grading.to_json())
    for ours, theirs in (
        (again.quantiles, grading.quantiles),
        (again.rgb_quantiles, grading.rgb_quantiles),
    ):
        assert ours is not None and np.allclose(ours, theirs, atol=0.01)
    assert grading_distance(again, grading) < 0.01
    old = grading.to_json()
    del old["rgb_quantiles"]  # saved before the landing's sRGB shape
    assert Grading.from_json(old).rgb_quantiles is None
    source = np.asarray(data.astronaut()[::4, ::4])
    assert moment_cut(source, transfer(source, Grading.from_json(old)), data.coffee()) > 0.9
    del old["lab_quantiles"]
    assert Grading.from_json(old).quantiles is None
    for key in ("lab_quantiles", "rgb_quantiles"):
        with pytest.raises(ValueError, match=key):
            Grading.from_json({**grading.to_json(), key: [[1.0, 2.0]]})


def test_the_roll_off_leaves_colours_in_gamut_and_keeps_order_past_the_ends():
    rng = np.random.default_rng(0)
    inside = rng.uniform(0.05, 0.95, (1, 4000, 3)).astype(np.float32)
    assert np.abs(roll_off(rgb_to_lab(inside)) - inside).max() < 1.0 / 255
    # Lightness past both ends: no 0 or 255, and brighter stays brighter.
    ramp = np.zeros((1, 200, 3))
    ramp[0, :, 0] = np.linspace(-20.0, 120.0, 200)
    codes = np.round(roll_off(ramp) * 255)[0, :, 0]
    assert codes.min() > 0 and codes.max() < 255
    assert np.all(np.diff(codes) >= 0)
