"""Vector export: an image traced into an SVG with vtracer.

    svg = vectorize(pixels, VectorizeParams(colormode="color", mode="spline"))

vtracer clusters colours into layers and traces each layer's outlines into paths
(stacked, each filled with its colour). What a caller tunes, named as vtracer names it:

- ``colormode``: ``color`` or ``binary`` (black and white)
- ``color_precision``: significant bits per colour channel (1-8; fewer: fewer layers)
- ``filter_speckle``: drop patches smaller than this many pixels (0-128; a speckle filter)
- ``mode``: ``spline`` (smooth curves), ``polygon`` (straight edges) or ``none`` (pixels)

Pixels with alpha below half are left out (a background-removed cut-out vectorises to
its subject only). Blocking, CPU-bound; seconds for a 1K image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from pipelines.params import ParamError

COLOR_MODES = ("color", "binary")
CURVE_MODES = ("spline", "polygon", "none")
_EMPTY_PATH = re.compile(r'<path d="\s*"[^>]*/>\n?')


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


def vectorize(pixels: np.ndarray, params: VectorizeParams = VectorizeParams()) -> str:
    """SVG text of ``pixels`` (uint8 HxWx3, or HxWx4 whose transparent part is skipped)."""
    import vtracer

    params = params.checked()
    height, width = pixels.shape[:2]
    if pixels.shape[2] == 3:
        pixels = np.dstack([pixels, np.full((height, width), 255, np.uint8)])
    rgba = [tuple(p) for p in np.ascontiguousarray(pixels).reshape(-1, 4).tolist()]
    svg = vtracer.convert_pixels_to_svg(
        rgba,
        size=(width, height),
        colormode=params.colormode,
        hierarchical="stacked",
        mode=params.mode,
        filter_speckle=params.filter_speckle,
        color_precision=params.color_precision,
    )
    # vtracer writes an empty path for a layer with nothing left (binary mode does).
    return _EMPTY_PATH.sub("", svg)
