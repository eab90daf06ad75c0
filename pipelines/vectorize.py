"""Vector export: an image traced into an SVG with vtracer.

    svg = vectorize(pixels, VectorizeParams(colormode="color", mode="spline"))

vtracer clusters colours into layers and traces each layer's outlines into paths
(stacked, each filled with its colour). What a caller tunes, named as vtracer names it:

- ``colormode``: ``color`` or ``binary`` (black and white)
- ``color_precision``: significant bits per colour channel (1-8; fewer: fewer layers)
- ``filter_speckle``: drop patches smaller than this many pixels (0-128; a speckle filter)
- ``mode``: ``spline`` (smooth curves), ``polygon`` (straight edges) or ``none`` (pixels)

Pixels with alpha below half are left out (a background-removed cut-out vectorises to
its subject only). Blocking, CPU-bound; seconds for a 2K image.

Memory is bounded, whatever the image's size: the trace runs at a working resolution of
at most ``WORK_LONG_SIDE`` px on the long side (a bigger image is first reduced by the
smallest whole factor that fits, a box average), and vtracer is handed that image as one
PNG buffer, never as Python objects per pixel (a tuple per pixel cost ~170 bytes each:
~10 GiB for an 8K image). The SVG still declares the drawing's size the caller asks for,
by default the image's own: its ``viewBox`` is the traced resolution, so the paths scale
without being rewritten.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipelines.params import ParamError

COLOR_MODES = ("color", "binary")
CURVE_MODES = ("spline", "polygon", "none")
# Tracing cost grows with pixels (vtracer's clusters and paths): past 2048 px the paths
# gain detail nobody sees at a vector's scale, and memory would follow the request.
WORK_LONG_SIDE = 2048
_EMPTY_PATH = re.compile(r'<path d="\s*"[^>]*/>\n?')
_SVG_SIZE = re.compile(r'<svg ([^>]*?)width="(\d+)" height="(\d+)"')


@dataclass(frozen=True)
class VectorizeParams:
    """vtracer's main knobs; defaults are vtracer's own for colour images."""

    colormode: str = "color"
    color_precision: int = 6
    filter_speckle: int = 4
    mode: str = "spline"

    def checked(self) -> VectorizeParams:
        """Itself, or ``ParamError`` naming the bad field."""
        if self.colormode not in COLOR_MODES:
            raise ParamError("colormode", f"colormode must be one of {', '.join(COLOR_MODES)}")
        if self.mode not in CURVE_MODES:
            raise ParamError("mode", f"mode must be one of {', '.join(CURVE_MODES)}")
        if not 1 <= self.color_precision <= 8:
            raise ParamError("color_precision", "color_precision must be 1-8")
        if not 0 <= self.filter_speckle <= 128:
            raise ParamError("filter_speckle", "filter_speckle must be 0-128")
        return self


def work_factor(width: int, height: int) -> int:
    """The whole factor an image of this size is reduced by before tracing: the smallest
    that brings its long side to ``WORK_LONG_SIDE`` or below (1 for images that fit)."""
    return max(1, math.ceil(max(width, height) / WORK_LONG_SIDE))


def vectorize(
    pixels: np.ndarray,
    params: VectorizeParams = VectorizeParams(),
    size: tuple[int, int] | None = None,
) -> str:
    """SVG text of ``pixels`` (uint8 HxWx3, or HxWx4 whose transparent part is skipped).

    ``size`` is the drawing's declared (width, height), by default the pixels' own; the
    trace itself runs on at most ``WORK_LONG_SIDE`` px (see the module docstring)."""
    import vtracer

    params = params.checked()
    height, width = pixels.shape[:2]
    image = Image.fromarray(np.ascontiguousarray(pixels))
    factor = work_factor(width, height)
    if factor > 1:
        image = image.reduce(factor)
    svg = vtracer.convert_raw_image_to_svg(
        _png(image),
        img_format="png",
        colormode=params.colormode,
        hierarchical="stacked",
        mode=params.mode,
        filter_speckle=params.filter_speckle,
        color_precision=params.color_precision,
    )
    # vtracer writes an empty path for a layer with nothing left (binary mode does).
    svg = _EMPTY_PATH.sub("", svg)
    return _sized(svg, size or (width, height))


def _png(image: Image.Image) -> bytes:
    # Stored, not deflated: vtracer decodes it at once, so compressing buys nothing.
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=0)
    return buf.getvalue()


def _sized(svg: str, size: tuple[int, int]) -> str:
    """``svg`` declaring ``size`` as its drawing size, with its own coordinates as the
    ``viewBox`` (a vector scales without touching its paths)."""

    def declare(match: re.Match[str]) -> str:
        before, traced_w, traced_h = match.groups()
        return (
            f'<svg {before}width="{size[0]}" height="{size[1]}" viewBox="0 0 {traced_w} {traced_h}"'
        )

    sized, count = _SVG_SIZE.subn(declare, svg, count=1)
    if count != 1:
        raise RuntimeError("vtracer's SVG has no width and height to declare the size on")
    return sized
