"""Extractors on synthetic images with known ground truth and on scikit-image's bundled
photographs (inside the package: nothing is downloaded)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from agentic.colour import delta_e, downsample, lab_of
from agentic.composition import extract_composition, structure_image
from agentic.grading import (
    Grading,
    apply_cube,
    cube_lut,
    extract_grading,
    grading_distance,
    read_cube,
    transfer,
)
from agentic.lighting import extract_lighting
from agentic.palette import extract_palette

PHOTOS = {
    "astronaut": data.astronaut,
    "coffee": data.coffee,
    "chelsea": data.chelsea,
    "rocket": data.rocket,
}


def blocks(colours: list[tuple[int, int, int]], shares: list[float], size=(120, 200)) -> np.ndarray:
    """Vertical bands of ``colours`` whose widths are ``shares`` of the frame."""
    height, width = size
    image = np.zeros((height, width, 3), np.uint8)
    edges = np.round(np.cumsum([0.0, *shares]) * width).astype(int)
    for colour, x0, x1 in zip(colours, edges[:-1], edges[1:], strict=True):
        image[:, x0:x1] = colour
    return image


@pytest.mark.parametrize(
    ("colours", "shares"),
    [
        ([(200, 30, 40), (20, 120, 200), (240, 220, 60), (30, 160, 70)], [0.4, 0.3, 0.2, 0.1]),
        ([(15, 15, 20), (235, 230, 220), (180, 90, 30)], [0.5, 0.25, 0.25]),
        ([(90, 60, 140), (120, 200, 190)], [0.7, 0.3]),
    ],
)
def test_palette_recovers_known_colour_areas(colours, shares):
    swatches = extract_palette(blocks(colours, shares))
    assert len(swatches) == len(colours)
    truth = lab_of(np.array(colours))
    for lab, share in zip(truth, shares, strict=True):
        found = np.array([s.lab for s in swatches])
        distances = delta_e(found, lab[None, :])
        nearest = int(np.argmin(distances))
        assert distances[nearest] < 3.0
        assert abs(swatches[nearest].share - share) < 0.05
    assert swatches[0].hex.startswith("#") and abs(sum(s.share for s in swatches) - 1) < 1e-9


def test_palette_merges_near_duplicate_colours():
    # Two shades 1-2 ΔE apart are one colour to the eye: one swatch with both shares.
    image = blocks([(200, 30, 40), (203, 32, 41), (20, 120, 200)], [0.3, 0.3, 0.4])
    swatches = extract_palette(image)
    assert len(swatches) == 2
    assert abs(swatches[0].share - 0.6) < 0.05


def photo(name: str) -> np.ndarray:
    """A bundled photograph at 256 px long side (speed; statistics barely move)."""
    return downsample(PHOTOS[name](), 256)


PAIRS = [("astronaut", "coffee"), ("chelsea", "rocket"), ("rocket", "astronaut")]


@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_mk_transfer_cuts_the_statistics_distance_by_80_percent(source, target):
    src, goal = photo(source), extract_grading(photo(target))
    before = grading_distance(extract_grading(src), goal)
    after = grading_distance(extract_grading(transfer(src, goal, 1.0, "mk")), goal)
    assert after <= 0.2 * before, (before, after)


def _diagonal(grading: Grading) -> Grading:
    return Grading(grading.mean, np.diag(np.diag(grading.cov)), grading.curves)


@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_reinhard_transfer_cuts_the_per_channel_distance_by_80_percent(source, target):
    # Reinhard matches each Lab channel's mean and spread, not their correlations: it is
    # judged on what it matches (the MK map above matches the full covariance).
    src, goal = photo(source), extract_grading(photo(target))
    before = grading_distance(_diagonal(extract_grading(src)), _diagonal(goal))
    out = transfer(src, goal, 1.0, "reinhard")
    after = grading_distance(_diagonal(extract_grading(out)), _diagonal(goal))
    assert after <= 0.2 * before, (before, after)


def test_grading_strength_interpolates():
    src, goal = photo("astronaut"), extract_grading(photo("coffee"))
    distances = [
        grading_distance(extract_grading(transfer(src, goal, s)), goal) for s in (0.0, 0.5, 1.0)
    ]
    assert distances[0] > distances[1] > distances[2]


def test_cube_lut_reproduces_the_transfer():
    src, goal = photo("chelsea"), extract_grading(photo("coffee"))
    text = cube_lut(src, goal, size=33)
    assert "LUT_3D_SIZE 33" in text and len(text.splitlines()) == 4 + 33**3
    # Fitted on the source, the transfer is a colour -> colour map; a LUT holds it up to
    # trilinear interpolation between its grid points (the shape step is not linear), so
    # the gap shrinks as the grid gets finer.
    direct = transfer(src, goal).astype(int)
    gaps = [
        np.abs(apply_cube(src, read_cube(cube_lut(src, goal, size=size))) - direct).mean()
        for size in (33, 65)
    ]
    assert gaps[0] < 3.0 and gaps[1] < 1.5 and gaps[1] < gaps[0] / 1.5, gaps


def test_lighting_key_of_synthetic_high_and_low_key_images():
    high = np.full((96, 96, 3), 228, np.uint8)
    high[30:60, 30:60] = 170
    low = np.full((96, 96, 3), 22, np.uint8)
    low[30:60, 30:60] = 90
    assert extract_lighting(high).key == "high"
    assert extract_lighting(low).key == "low"
    assert extract_lighting(data.astronaut()).key == "mid"


@pytest.mark.parametrize(
    ("transform", "expected"),
    [
        (lambda r: r, "left"),
        (lambda r: r[:, ::-1], "right"),
        (lambda r: np.transpose(r, (1, 0, 2)), "top"),
    ],
)
def test_lighting_direction_of_a_ramp(transform, expected):
    ramp = np.tile(np.linspace(250, 15, 128)[None, :, None], (128, 1, 3)).astype(np.uint8)
    lighting = extract_lighting(np.ascontiguousarray(transform(ramp)))
    assert lighting.direction_label == expected
    # A soft ramp is soft light; an even field has no direction.
    assert lighting.hardness < 0.3
    assert extract_lighting(np.full((64, 64, 3), 128, np.uint8)).direction_label == "diffuse"


def test_lighting_temperature_reads_warm_and_cool():
    warm = np.full((64, 64, 3), (255, 190, 130), np.uint8)
    cool = np.full((64, 64, 3), (180, 200, 255), np.uint8)
    assert extract_lighting(warm).temperature_k < 4000 < 8000 < extract_lighting(cool).temperature_k


def test_composition_finds_the_subject_and_the_horizon():
    image = np.zeros((128, 128, 3), np.uint8)
    image[:80] = (90, 140, 200)  # sky
    image[80:] = (60, 90, 40)  # ground: a horizon at 80/128
    image[20:50, 80:110] = (250, 240, 60)  # the subject, top right
    composition = extract_composition(image)
    x0, y0, x1, y1 = composition.box
    assert x0 <= 80 / 128 + 0.05 and x1 >= 110 / 128 - 0.05 and y0 <= 20 / 128 + 0.05
    assert composition.centroid[0] > 0.5
    assert composition.horizon is not None and abs(composition.horizon - 80 / 128) < 0.06
    mirrored = np.zeros((64, 64, 3), np.uint8)
    mirrored[16:48, 16:48] = 200
    assert extract_composition(mirrored).symmetry > 0.95 > composition.symmetry


def test_structure_images_are_at_the_call_size():
    photo = data.astronaut()
    edges = structure_image(photo, 128, 96, for_controlnet=True)
    layout = structure_image(photo, 128, 96, for_controlnet=False)
    assert edges.shape == layout.shape == (96, 128, 3) and edges.dtype == np.uint8
    assert set(np.unique(edges)) <= {0, 255} and edges.max() == 255


def test_a_hard_shadow_edge_reads_harder_than_a_soft_fall_off():
    hard = np.full((128, 128, 3), 220, np.uint8)
    hard[:, 64:] = 40  # a crisp shadow line
    soft = np.tile(np.linspace(220, 40, 128)[None, :, None], (128, 1, 3)).astype(np.uint8)
    assert extract_lighting(hard).hardness > 0.5 > 0.3 > extract_lighting(soft).hardness
