"""Vector export: flat shapes become filled SVG paths of their colours, traced at a bounded
working resolution from bytes, drawn at the size the caller declares."""

from __future__ import annotations

import tracemalloc
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from pipelines.params import ParamError
from pipelines.vectorize import WORK_LONG_SIDE, VectorizeParams, vectorize, work_factor

SVG = "{http://www.w3.org/2000/svg}"
SHAPES = {(220, 30, 30), (30, 160, 40), (30, 60, 200)}


def three_shapes() -> np.ndarray:
    """A white canvas with a red rectangle, a green disc and a blue triangle."""
    image = np.full((160, 200, 3), 255, np.uint8)
    image[10:60, 10:80] = (220, 30, 30)
    yy, xx = np.mgrid[0:160, 0:200]
    image[(yy - 115) ** 2 + (xx - 50) ** 2 < 35**2] = (30, 160, 40)
    image[(yy > 20) & (yy < 140) & (xx - 110 > (140 - yy) // 2) & (xx < 190)] = (30, 60, 200)
    return image


def fills(svg: str) -> list[tuple[int, int, int]]:
    root = ET.fromstring(svg)  # parses as XML, or raises
    assert root.tag == f"{SVG}svg"
    colours = []
    for path in root.iter(f"{SVG}path"):
        fill = path.get("fill", "")
        assert fill.startswith("#") and path.get("d")
        colours.append(tuple(int(fill[i : i + 2], 16) for i in (1, 3, 5)))
    return colours


def near(colour: tuple[int, int, int], target: tuple[int, int, int], tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, target, strict=True))


@pytest.mark.parametrize("mode", ["spline", "polygon"])
def test_three_flat_shapes_become_filled_paths_of_their_colours(mode: str):
    colours = fills(vectorize(three_shapes(), VectorizeParams(mode=mode)))
    assert len(colours) >= 3
    for shape in SHAPES:
        assert any(near(c, shape) for c in colours), (shape, colours)


def test_binary_mode_and_speckle_filter():
    image = three_shapes()
    rng = np.random.default_rng(0)
    for y, x in rng.integers(0, 155, (20, 2)):
        image[y : y + 3, x : x + 3] = (0, 0, 0)  # 3x3 px specks of dirt
    noisy = fills(vectorize(image, VectorizeParams(filter_speckle=1)))
    clean = fills(vectorize(image, VectorizeParams(filter_speckle=16)))
    assert len(clean) < len(noisy)
    binary = fills(vectorize(image, VectorizeParams(colormode="binary")))
    assert binary and all(c in {(0, 0, 0), (255, 255, 255)} for c in binary)


def test_fewer_colour_bits_give_no_more_layers():
    gradient = np.repeat(np.linspace(0, 255, 200, dtype=np.uint8)[None, :, None], 60, 0)
    image = np.repeat(gradient, 3, axis=2)
    coarse = fills(vectorize(image, VectorizeParams(color_precision=2)))
    fine = fills(vectorize(image, VectorizeParams(color_precision=8)))
    assert len(coarse) < len(fine)


def test_transparent_pixels_are_left_out():
    rgba = np.dstack([three_shapes(), np.zeros((160, 200), np.uint8)])
    rgba[10:60, 10:80, 3] = 255  # only the red rectangle is opaque
    colours = fills(vectorize(rgba))
    assert colours and all(near(c, (220, 30, 30)) for c in colours)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (VectorizeParams(colormode="sepia"), "colormode"),
        (VectorizeParams(mode="bezier"), "mode"),
        (VectorizeParams(color_precision=0), "color_precision"),
        (VectorizeParams(filter_speckle=-1), "filter_speckle"),
    ],
)
def test_bad_parameters_name_their_field(params: VectorizeParams, field: str):
    with pytest.raises(ParamError) as caught:
        params.checked()
    assert caught.value.param == field


# Memory: a bounded working resolution, and bytes rather than a Python object per pixel


def shapes(width: int, height: int) -> np.ndarray:
    """``three_shapes`` drawn in proportion to the canvas: the same picture at any size."""
    yy, xx = np.mgrid[0:height, 0:width]
    y, x = yy / height, xx / width
    image = np.full((height, width, 3), 255, np.uint8)
    image[(y > 0.06) & (y < 0.38) & (x > 0.05) & (x < 0.4)] = (220, 30, 30)
    image[(y - 0.72) ** 2 + (x - 0.25) ** 2 < 0.04] = (30, 160, 40)
    image[(y > 0.12) & (y < 0.88) & (x > 0.55) & (x < 0.95)] = (30, 60, 200)
    return image


def test_a_big_image_is_traced_at_the_working_resolution_and_keeps_its_size():
    assert WORK_LONG_SIDE == 2048
    svg = vectorize(shapes(2100, 1050))  # halved to 1050 x 525 to fit 2048 px
    root = ET.fromstring(svg)
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == (
        "2100", "1050", "0 0 1050 525",
    )  # fmt: skip
    for shape in SHAPES:
        assert any(near(c, shape) for c in fills(svg)), shape


def test_the_declared_drawing_size_is_the_callers():
    root = ET.fromstring(vectorize(three_shapes(), size=(800, 640)))
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == (
        "800", "640", "0 0 200 160",
    )  # fmt: skip


def test_vtracer_is_handed_bytes_not_a_python_object_per_pixel():
    image = shapes(1024, 1024)
    vectorize(image[:64, :64])  # first call: vtracer's module and Pillow's plugins
    tracemalloc.start()
    try:
        vectorize(image)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # One PNG buffer of the 3 MiB of pixels (and its copy); a tuple per pixel was 100+ MiB.
    assert peak < 16 * 2**20, peak / 2**20


def test_work_factor_is_the_smallest_that_fits():
    assert work_factor(2048, 100) == 1
    assert work_factor(2049, 100) == 2
    assert work_factor(4096, 4096) == 2
    assert work_factor(4320, 7680) == 4  # 8K UHD is traced at 1920 px
