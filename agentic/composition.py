"""Composition: where the eye goes and how the frame is built.

- layout map: spectral-residual saliency (Hou & Zhang 2007) on a 64 px grey copy, mixed
  with its edge density, normalised to [0, 1] on a ``GRID`` x ``GRID`` grid;
- subject box and centroid: the largest region of the map above Otsu's threshold, and
  the map's weighted centroid (both in [0, 1] frame coordinates, x right, y down);
- horizon: the row with the strongest horizontal edge across the frame, if one stands
  out (None otherwise);
- symmetry: 1 - the mean left-right mirror difference of the grey image over its spread;
- thirds: how close the centroid sits to the nearest rule-of-thirds power point (1 on it).

Guidance for generation (``structure_image``): for img2img, the reference itself, blurred
so only its big shapes and tones survive; for a ControlNet, its Canny edges.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass

import numpy as np

from agentic.colour import downsample

GRID = 32
SALIENCY_SIDE = 64
# A thumbnail kept in the recipe so a saved recipe can guide structure without its images.
THUMB_SIDE = 48


@dataclass(frozen=True)
class Composition:
    """A reference's composition (coordinates are fractions of the frame)."""

    layout: np.ndarray  # GRID x GRID, float in [0, 1]
    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    centroid: tuple[float, float]
    horizon: float | None
    symmetry: float
    thirds: float
    thumbnail: str = ""  # base64 PNG, THUMB_SIDE long side

    def to_json(self) -> dict:
        return {
            "subject_box": [round(v, 4) for v in self.box],
            "centroid": [round(v, 4) for v in self.centroid],
            "horizon": None if self.horizon is None else round(self.horizon, 4),
            "symmetry": round(self.symmetry, 4),
            "thirds_alignment": round(self.thirds, 4),
            "layout": [[round(float(v), 3) for v in row] for row in self.layout],
            "thumbnail_png": self.thumbnail,
        }

    @classmethod
    def from_json(cls, data: dict) -> Composition:
        layout = np.asarray(data["layout"], np.float64)
        if layout.shape != (GRID, GRID):
            raise ValueError(f"a layout is {GRID}x{GRID}")
        box = tuple(float(v) for v in data["subject_box"])
        centroid = tuple(float(v) for v in data["centroid"])
        if len(box) != 4 or len(centroid) != 2:
            raise ValueError("subject_box has 4 values, centroid 2")
        horizon = data.get("horizon")
        return cls(
            np.clip(layout, 0.0, 1.0),
            box,  # type: ignore[arg-type]
            centroid,  # type: ignore[arg-type]
            None if horizon is None else float(horizon),
            float(data["symmetry"]),
            float(data["thirds_alignment"]),
            str(data.get("thumbnail_png", "")),
        )


def _grey(pixels: np.ndarray, side: int) -> np.ndarray:
    import cv2

    small = downsample(pixels, side)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


def saliency_map(pixels: np.ndarray) -> np.ndarray:
    """Spectral-residual saliency mixed with edge density, GRID x GRID in [0, 1]."""
    import cv2

    grey = _grey(pixels, SALIENCY_SIDE)
    spectrum = np.fft.fft2(grey)
    log_amplitude = np.log(np.abs(spectrum) + 1e-8)
    residual = log_amplitude - cv2.blur(log_amplitude.astype(np.float32), (3, 3))
    phase = np.angle(spectrum)
    saliency = np.abs(np.fft.ifft2(np.exp(residual + 1j * phase))) ** 2
    saliency = cv2.GaussianBlur(saliency.astype(np.float32), (0, 0), 2.5)
    edges = cv2.GaussianBlur(
        np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)), (0, 0), 2.5
    )
    combined = _normalise(saliency) + _normalise(edges)
    return _normalise(cv2.resize(combined, (GRID, GRID), interpolation=cv2.INTER_AREA))


def _normalise(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-12:
        return np.zeros_like(values, dtype=np.float64)
    return ((values - low) / (high - low)).astype(np.float64)


def _subject_box(layout: np.ndarray) -> tuple[float, float, float, float]:
    import cv2

    as_u8 = np.round(layout * 255).astype(np.uint8)
    _, mask = cv2.threshold(as_u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    if count <= 1:
        return (0.0, 0.0, 1.0, 1.0)
    # Row 0 is the background; pick the largest foreground region.
    index = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = (int(v) for v in stats[index, :4])
    return (x / GRID, y / GRID, (x + w) / GRID, (y + h) / GRID)


def _horizon(grey: np.ndarray) -> float | None:
    import cv2

    smooth = cv2.GaussianBlur(grey, (0, 0), 1.5)
    vertical = np.abs(cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3))
    # A horizon runs across the frame: the row's median edge, not a strong spot.
    rows = np.median(vertical, axis=1)
    rows[:2] = rows[-2:] = 0.0  # borders
    best = int(np.argmax(rows))
    if rows[best] < 0.02 or rows[best] < 3.0 * float(np.median(rows) + 1e-6):
        return None
    return best / (len(rows) - 1)


def _thirds(centroid: tuple[float, float]) -> float:
    points = [(x, y) for x in (1 / 3, 2 / 3) for y in (1 / 3, 2 / 3)]
    nearest = min(math.dist(centroid, p) for p in points)
    # The farthest any point is from its nearest power point is a corner: dist to (1/3, 1/3).
    return float(max(0.0, 1.0 - nearest / math.dist((0, 0), (1 / 3, 1 / 3))))


def extract_composition(pixels: np.ndarray) -> Composition:
    """The composition of uint8 RGB ``pixels``."""
    layout = saliency_map(pixels)
    total = layout.sum()
    ys, xs = np.mgrid[0:GRID, 0:GRID]
    if total > 1e-9:
        centroid = (
            float(((xs + 0.5) * layout).sum() / total / GRID),
            float(((ys + 0.5) * layout).sum() / total / GRID),
        )
    else:
        centroid = (0.5, 0.5)
    grey = _grey(pixels, SALIENCY_SIDE)
    spread = float(np.abs(grey - grey.mean()).mean())
    mirror = float(np.abs(grey - grey[:, ::-1]).mean())
    symmetry = 1.0 - min(1.0, mirror / max(2.0 * spread, 1e-6))
    return Composition(
        layout=layout,
        box=_subject_box(layout),
        centroid=centroid,
        horizon=_horizon(grey),
        symmetry=symmetry,
        thirds=_thirds(centroid),
        thumbnail=thumbnail_png(pixels),
    )


def thumbnail_png(pixels: np.ndarray) -> str:
    """A THUMB_SIDE px base64 PNG of ``pixels`` (the recipe's copy of the structure)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(downsample(pixels, THUMB_SIDE)).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode()


def thumbnail_pixels(text: str) -> np.ndarray:
    """The pixels of a ``thumbnail_png``."""
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(text))) as image:
        return np.asarray(image.convert("RGB"))


def blend_compositions(compositions: list[Composition], weights: list[float]) -> Composition:
    """Weighted mean of maps, boxes and centroids; the horizon over those that have one
    (none if under half the weight has one); the thumbnail of the heaviest source."""
    w = np.asarray(weights, np.float64)
    w = w / w.sum()
    layout = _normalise(sum(wi * c.layout for wi, c in zip(w, compositions, strict=True)))
    box = tuple(
        float(v) for v in sum(wi * np.array(c.box) for wi, c in zip(w, compositions, strict=True))
    )
    centroid = tuple(
        float(v)
        for v in sum(wi * np.array(c.centroid) for wi, c in zip(w, compositions, strict=True))
    )
    with_horizon = [
        (wi, c.horizon) for wi, c in zip(w, compositions, strict=True) if c.horizon is not None
    ]
    horizon_weight = sum(wi for wi, _ in with_horizon)
    horizon = (
        sum(wi * h for wi, h in with_horizon) / horizon_weight if horizon_weight >= 0.5 else None
    )
    heaviest = compositions[int(np.argmax(w))]
    return Composition(
        layout=layout,
        box=box,  # type: ignore[arg-type]
        centroid=centroid,  # type: ignore[arg-type]
        horizon=horizon,
        symmetry=float(sum(wi * c.symmetry for wi, c in zip(w, compositions, strict=True))),
        thirds=_thirds(centroid),  # type: ignore[arg-type]
        thumbnail=heaviest.thumbnail,
    )


def composition_similarity(a: Composition, b: Composition) -> float:
    """0-1: the correlation of the layout maps (mapped from [-1, 1]) times how close the
    centroids are."""
    x = a.layout.ravel() - a.layout.mean()
    y = b.layout.ravel() - b.layout.mean()
    denominator = float(np.linalg.norm(x) * np.linalg.norm(y))
    correlation = float(x @ y / denominator) if denominator > 1e-12 else 0.0
    closeness = 1.0 - min(1.0, math.dist(a.centroid, b.centroid) / math.sqrt(0.5))
    return float(np.clip((correlation + 1.0) / 2.0, 0.0, 1.0) * closeness)


def structure_image(
    pixels: np.ndarray, width: int, height: int, for_controlnet: bool
) -> np.ndarray:
    """Guidance at the call's size: Canny edges (white on black, RGB) for a ControlNet, or
    the image blurred to its big shapes and tones for img2img. uint8 HxWx3."""
    import cv2

    resized = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)
    if for_controlnet:
        grey = cv2.cvtColor(resized, cv2.COLOR_RGB2GRAY)
        edges = cv2.Canny(cv2.GaussianBlur(grey, (0, 0), 1.0), 60, 140)
        return np.repeat(edges[:, :, None], 3, axis=2)
    sigma = max(width, height) / 48.0
    return cv2.GaussianBlur(resized, (0, 0), sigma)
