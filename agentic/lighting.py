"""Lighting: key, contrast, dynamic range, colour temperature, direction and hardness.

All measured on CIELAB lightness (L*, 0-100) of a downsampled copy; coarse on purpose,
as a director would describe a reference ("low-key, hard light from the left, warm"):

- key: median L* >= ``HIGH_KEY`` is high, <= ``LOW_KEY`` low, mid otherwise;
- contrast: RMS contrast, the standard deviation of L*/100;
- dynamic range: the 1st-99th percentile spread of L*/100;
- colour temperature: McCamy's CCT of the grey-world white (mean linear RGB -> xy);
- direction: the slope of a plane fitted to L* (x left to right, y top to bottom); the
  light comes from the brighter side; "diffuse" when the slope is shallow;
- hardness: how much a blur lowers the strongest L* gradients (99th percentile): a soft
  fall-off keeps its peak, a hard shadow edge loses it; 0 soft to 1 hard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agentic.colour import as_float_rgb, downsample, rgb_to_lab, to_uint8
from agentic.gamut import roll_off

LIGHT_SIDE = 128
HIGH_KEY = 65.0
LOW_KEY = 35.0
# L* units of change across the frame below which light reads as diffuse.
DIFFUSE_SLOPE = 6.0
KEYS = ("low", "mid", "high")
DIRECTIONS = (
    "left", "top-left", "top", "top-right", "right", "bottom-right", "bottom", "bottom-left",
)  # fmt: skip


@dataclass(frozen=True)
class Lighting:
    """A reference's lighting; ``direction`` is the unit vector toward the light (x right,
    y up), zero when diffuse."""

    median_l: float
    contrast: float
    dynamic_range: float
    temperature_k: float
    direction: tuple[float, float]
    slope: float
    hardness: float

    @property
    def key(self) -> str:
        return key_of(self.median_l)

    @property
    def direction_label(self) -> str:
        return direction_label(self.direction, self.slope)

    def to_json(self) -> dict:
        return {
            "key": self.key,
            "median_lightness": round(self.median_l, 2),
            "contrast": round(self.contrast, 4),
            "dynamic_range": round(self.dynamic_range, 4),
            "temperature_k": round(self.temperature_k),
            "direction": self.direction_label,
            "direction_vector": [round(v, 4) for v in self.direction],
            "direction_strength": round(self.slope, 3),
            "hardness": round(self.hardness, 4),
        }

    @classmethod
    def from_json(cls, data: dict) -> Lighting:
        x, y = (float(v) for v in data["direction_vector"])
        return cls(
            float(data["median_lightness"]),
            float(data["contrast"]),
            float(data["dynamic_range"]),
            float(data["temperature_k"]),
            (x, y),
            float(data["direction_strength"]),
            float(data["hardness"]),
        )


def key_of(median_l: float) -> str:
    """high / mid / low key from the median L*."""
    if median_l >= HIGH_KEY:
        return "high"
    if median_l <= LOW_KEY:
        return "low"
    return "mid"


def direction_label(direction: tuple[float, float], slope: float) -> str:
    """The nearest of eight directions, or ``diffuse``."""
    if slope < DIFFUSE_SLOPE:
        return "diffuse"
    x, y = direction
    # 0 = left, counter-clockwise is negative: left, top-left, top, ... with y up.
    angle = math.degrees(math.atan2(y, -x))  # 0 at left, 90 at top
    index = round(angle / 45.0) % 8
    return DIRECTIONS[index]


def _cct(rgb: np.ndarray) -> float:
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    r, g, b = linear.reshape(-1, 3).mean(axis=0)
    x_ = 0.4124 * r + 0.3576 * g + 0.1805 * b
    y_ = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z_ = 0.0193 * r + 0.1192 * g + 0.9505 * b
    total = x_ + y_ + z_
    if total <= 1e-9:
        return 6500.0
    x, y = x_ / total, y_ / total
    n = (x - 0.3320) / (0.1858 - y)
    cct = 449.0 * n**3 + 3525.0 * n**2 + 6823.3 * n + 5520.33
    return float(np.clip(cct, 1500.0, 20000.0))


def extract_lighting(pixels: np.ndarray) -> Lighting:
    """The lighting of uint8 RGB ``pixels``."""
    import cv2

    small = downsample(pixels, LIGHT_SIDE)
    lightness = rgb_to_lab(small)[..., 0].astype(np.float64)
    height, width = lightness.shape
    p1, median, p99 = np.percentile(lightness, [1, 50, 99])
    # Plane fit L = a + bx + cy over x, y in [-1, 1]; the light is up-slope.
    ys, xs = np.mgrid[0:height, 0:width]
    xs = xs / max(width - 1, 1) * 2.0 - 1.0
    ys = 1.0 - ys / max(height - 1, 1) * 2.0  # y up
    design = np.stack([np.ones(xs.size), xs.ravel(), ys.ravel()], axis=1)
    (_, bx, by), *_ = np.linalg.lstsq(design, lightness.ravel(), rcond=None)
    norm = math.hypot(bx, by)
    direction = (bx / norm, by / norm) if norm > 1e-9 else (0.0, 0.0)
    # Change of L* across the frame along the light direction (edge to edge: 2 units).
    slope = 2.0 * norm
    sharp = _gradient(lightness)
    soft = _gradient(cv2.GaussianBlur(lightness, (0, 0), 3.0))
    # A blur barely lowers the peak of a soft fall-off and flattens a hard edge's.
    peak_sharp = float(np.percentile(sharp, 99))
    peak_soft = float(np.percentile(soft, 99))
    hardness = float(np.clip(1.0 - peak_soft / max(peak_sharp, 1e-6), 0.0, 1.0))
    return Lighting(
        median_l=float(median),
        contrast=float(lightness.std() / 100.0),
        dynamic_range=float((p99 - p1) / 100.0),
        temperature_k=_cct(as_float_rgb(small)),
        direction=(float(direction[0]), float(direction[1])),
        slope=float(slope),
        hardness=hardness,
    )


def _gradient(lightness: np.ndarray) -> np.ndarray:
    import cv2

    gx = cv2.Sobel(lightness, cv2.CV_64F, 1, 0, ksize=3)
    gy = cv2.Sobel(lightness, cv2.CV_64F, 0, 1, ksize=3)
    return np.hypot(gx, gy)


def blend_lightings(lightings: list[Lighting], weights: list[float]) -> Lighting:
    """Weighted means; temperature averaged in mireds (as colour filters add), direction
    as the weighted mean of the slope vectors."""
    w = np.asarray(weights, np.float64)
    w = w / w.sum()
    vector = sum(
        wi * np.array(li.direction) * li.slope for wi, li in zip(w, lightings, strict=True)
    )
    slope = float(np.hypot(*vector))
    direction = tuple(float(v) for v in vector / slope) if slope > 1e-9 else (0.0, 0.0)
    mired = float(sum(wi * 1e6 / li.temperature_k for wi, li in zip(w, lightings, strict=True)))

    def mean(name: str) -> float:
        return float(sum(wi * getattr(li, name) for wi, li in zip(w, lightings, strict=True)))

    return Lighting(
        median_l=mean("median_l"),
        contrast=mean("contrast"),
        dynamic_range=mean("dynamic_range"),
        temperature_k=1e6 / mired,
        direction=direction,  # type: ignore[arg-type]
        slope=slope,
        hardness=mean("hardness"),
    )


def lighting_vector(lighting: Lighting) -> np.ndarray:
    """The numbers compared between references (outliers) and against candidates, in
    comparable units: L* median /100, contrast, range, kelvin/10000, slope vector /100."""
    x, y = lighting.direction
    return np.array(
        [
            lighting.median_l / 100.0,
            lighting.contrast,
            lighting.dynamic_range,
            lighting.temperature_k / 10000.0,
            x * lighting.slope / 100.0,
            y * lighting.slope / 100.0,
            lighting.hardness,
        ]
    )


def relight_lab(pixels: np.ndarray, target: Lighting, strength: float) -> np.ndarray:
    """``pixels`` (uint8 RGB) with their L* median and contrast moved toward ``target``
    and the target's directional fall-off added, at ``strength`` (0-1), as float CIELAB.
    Chroma untouched; L* is not clipped (the caller rolls it into the sRGB cube once, after
    the other transfers: a clip here would flatten what they could still use)."""
    lab = rgb_to_lab(pixels).astype(np.float64)
    if strength <= 0.0:
        return lab
    lightness = lab[..., 0]
    own = extract_lighting(pixels)
    own_sd = max(lightness.std(), 1e-3)
    gain = (target.contrast * 100.0) / own_sd
    matched = (lightness - own.median_l) * gain + target.median_l
    height, width = lightness.shape
    ys, xs = np.mgrid[0:height, 0:width]
    xs = xs / max(width - 1, 1) * 2.0 - 1.0
    ys = 1.0 - ys / max(height - 1, 1) * 2.0
    # Replace the image's own tilt by the target's (both in L* per half frame).
    own_tilt = (own.direction[0] * xs + own.direction[1] * ys) * own.slope / 2.0 * gain
    tilt = (target.direction[0] * xs + target.direction[1] * ys) * target.slope / 2.0
    matched = matched - own_tilt + tilt
    lab[..., 0] = lightness + strength * (matched - lightness)
    return lab


def relight(pixels: np.ndarray, target: Lighting, strength: float) -> np.ndarray:
    """``relight_lab`` rolled into the sRGB cube (``agentic.gamut``); uint8 RGB back."""
    if strength <= 0.0:
        return pixels
    return to_uint8(roll_off(relight_lab(pixels, target, strength)))
