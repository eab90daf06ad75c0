"""Colour grading: what a reference's colour looks like, and moving an image toward it.

A grading is the Lab mean and covariance of an image (the "look": its cast, its
saturation, how its colours co-vary), the quantile functions of its Lab colours along the
directions of ``agentic.transfer.BASES`` (the shape of that look: a skewed night sky, a
poster's two colours), the same in sRGB (where the gamut is the cube: the landing carries
the shape there so that saturated colours stay on the cube's surface, as the
reference's do) and per-channel RGB tone curves. All are read off a point sample
of the image (``STATS_SIDE``² single pixels drawn at random): an area-averaged thumbnail
shrinks the spread, by up to 2 Lab units on scikit-image's hubble_deep_field.

It is applied to another image (``agentic.transfer``: shape, moments, landing) at a
strength; the linear moment step is one of

- ``mk``: the Monge–Kantorovich linear map, the optimal transport map between the two
  Gaussians (Pitié & Kokaram 2007), written here: the library usually used for it is GPL;
- ``reinhard``: per-channel mean and standard deviation (Reinhard et al. 2001, in Lab).

``grading_distance`` is the 2-Wasserstein distance between the two Gaussians, in Lab
units: exactly what the MK map drives to zero, so it is the critique's measure too.
A grading exports as a ``.cube`` 3D LUT of the transfer from a source image to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agentic.colour import as_float_rgb, rgb_to_lab, to_uint8
from agentic.gamut import RollOff, srgb_of_lab
from agentic.transfer import (
    BASES,
    IDENTITY,
    QUANTILES,
    Affine,
    Landing,
    Shape,
    direction_quantiles,
    fit_landing,
    fit_shape,
    goal_of,
    inner_quantiles,
    linear_map,
    moments,
    point_sample,
    w2,
)

CURVE_POINTS = 17
METHODS = ("mk", "reinhard")
STATS_SIDE = 512  # moments are read off a point sample of at most this many px squared
SHAPE_SIDE = 256  # quantiles, off a sparser one (sorting is the cost)
_QUANTILE_SHAPE = (len(BASES), 3, QUANTILES)


@dataclass(frozen=True)
class Grading:
    """Lab mean (3), Lab covariance (3x3), RGB tone curves (3 x CURVE_POINTS, 0-1), Lab
    quantiles along ``BASES`` (len(BASES) x 3 x QUANTILES) and sRGB ones (0-1, the same
    shape). Quantiles are None in recipes saved before they existed: without Lab ones a
    grading transfers by moments alone, without sRGB ones the landing skips its shape."""

    mean: np.ndarray
    cov: np.ndarray
    curves: np.ndarray
    quantiles: np.ndarray | None = None
    rgb_quantiles: np.ndarray | None = None

    def to_json(self) -> dict:
        data = {
            "lab_mean": [round(float(v), 3) for v in self.mean],
            "lab_cov": [[round(float(v), 3) for v in row] for row in self.cov],
            "tone_curves": {
                channel: [round(float(v), 4) for v in curve]
                for channel, curve in zip("rgb", self.curves, strict=True)
            },
        }
        if self.quantiles is not None:
            data["lab_quantiles"] = np.round(self.quantiles, 2).tolist()
        if self.rgb_quantiles is not None:
            data["rgb_quantiles"] = np.round(self.rgb_quantiles, 4).tolist()
        return data

    @classmethod
    def from_json(cls, data: dict) -> Grading:
        mean = np.asarray(data["lab_mean"], np.float64)
        cov = np.asarray(data["lab_cov"], np.float64)
        curves = np.asarray([data["tone_curves"][c] for c in "rgb"], np.float64)
        if mean.shape != (3,) or cov.shape != (3, 3) or curves.shape != (3, CURVE_POINTS):
            raise ValueError("a grading has a 3-value lab_mean, a 3x3 lab_cov and 3 curves")
        quantiles = _quantiles_of(data, "lab_quantiles")
        rgb_quantiles = _quantiles_of(data, "rgb_quantiles")
        return cls(mean, (cov + cov.T) / 2.0, curves, quantiles, rgb_quantiles)


def _quantiles_of(data: dict, key: str) -> np.ndarray | None:
    quantiles = data.get(key)
    if quantiles is None:
        return None
    quantiles = np.asarray(quantiles, np.float64)
    if quantiles.shape != _QUANTILE_SHAPE:
        raise ValueError(f"a grading's {key} are {_QUANTILE_SHAPE} numbers")
    # An edited recipe may break the order; a quantile function never decreases.
    return np.maximum.accumulate(quantiles, axis=-1)


def extract_grading(pixels: np.ndarray) -> Grading:
    """The grading of uint8 RGB ``pixels`` (measured on point samples)."""
    sample = np.ascontiguousarray(point_sample(pixels, STATS_SIDE).reshape(1, -1, 3))
    lab = rgb_to_lab(sample)[0]
    mean, cov = moments(lab)
    step = max(1, -(-len(lab) // SHAPE_SIDE**2))
    sparse = lab[::step]  # every k-th of randomly drawn pixels: still a random sample
    rgb = as_float_rgb(sample)[0][::step]
    curves = np.quantile(rgb, np.linspace(0.0, 1.0, CURVE_POINTS), axis=0).T
    return Grading(mean, cov, curves, direction_quantiles(sparse), direction_quantiles(rgb))


def blend_gradings(gradings: list[Grading], weights: list[float]) -> Grading:
    """Weighted mean of means, covariances, curves and quantile functions (a blend of
    looks, not the pooled distribution: two opposite casts average to neutral instead of
    a wide spread; averaged quantile functions are the 1-D Wasserstein barycentre)."""
    w = np.asarray(weights, np.float64)
    w = w / w.sum()

    def mean(values: list[np.ndarray]) -> np.ndarray:
        return sum(wi * v for wi, v in zip(w, values, strict=True))

    def mean_or_none(values: list[np.ndarray | None]) -> np.ndarray | None:
        return None if any(v is None for v in values) else mean(values)

    return Grading(
        mean([g.mean for g in gradings]),
        mean([g.cov for g in gradings]),
        mean([g.curves for g in gradings]),
        mean_or_none([g.quantiles for g in gradings]),
        mean_or_none([g.rgb_quantiles for g in gradings]),
    )


def grading_distance(a: Grading, b: Grading) -> float:
    """2-Wasserstein distance between the Lab Gaussians of two gradings (Lab units)."""
    return w2((a.mean, a.cov), (b.mean, b.cov))


@dataclass(frozen=True)
class GradingFit:
    """The grading step fitted to one image: its shape map (None without quantiles), the
    linear map onto ``goal``; ``goal`` and ``rgb_target`` (sRGB quantiles, None without
    them) are what a landing aims at."""

    shape: Shape | None
    linear: Affine
    goal: tuple[np.ndarray, np.ndarray]
    method: str
    rgb_target: np.ndarray | None = None

    def apply(self, lab: np.ndarray) -> np.ndarray:
        shaped = self.shape.apply(lab) if self.shape is not None else lab
        return self.linear.apply(shaped)


def fit_grading(
    lab: np.ndarray, target: Grading, strength: float = 1.0, method: str = "mk"
) -> GradingFit:
    """The grading step for Lab ``lab`` (HxWx3 or Nx3) toward ``target`` at ``strength``
    (0: identity, 1: the full transfer), fitted on a point sample of it."""
    if method not in METHODS:
        raise ValueError(f"unknown transfer method {method!r}; known: {', '.join(METHODS)}")
    sample = np.asarray(point_sample(lab), np.float64)
    goal = goal_of(moments(sample), (target.mean, target.cov), strength)
    rgb_target = None
    if target.rgb_quantiles is not None and strength > 0.0:
        # The blend of the image's own quantile functions and the reference's (in the
        # cube the roll-off aims at): the landing's shape at this strength.
        own = direction_quantiles(srgb_of_lab(sample))
        rgb_target = (1.0 - strength) * own + strength * inner_quantiles(target.rgb_quantiles)
    shape = None
    if target.quantiles is not None and strength > 0.0:
        shape, sample = fit_shape(sample, target.quantiles, strength)
    linear = linear_map(moments(sample), goal, method)
    return GradingFit(shape, linear, goal, method, rgb_target)


def land(lab: np.ndarray, fit: GradingFit | None) -> Landing:
    """How Lab ``lab`` (after the grading step and anything since) enters the sRGB cube:
    landed on ``fit``'s goal, or only rolled off when no grading was applied."""
    sample = np.asarray(point_sample(lab), np.float64)
    if fit is None:
        return Landing(None, IDENTITY, RollOff.fit(sample))
    return fit_landing(sample, fit.goal, fit.method, fit.rgb_target)


def transfer(
    pixels: np.ndarray, target: Grading, strength: float = 1.0, method: str = "mk"
) -> np.ndarray:
    """``pixels`` (uint8 RGB) graded toward ``target`` at ``strength``; uint8 RGB back.

    Shape, moments, landing (``agentic.transfer``): at strength 1 the result's Lab mean
    and covariance land on the target's as nearly as the sRGB cube allows; below 1, on
    the blend of the image's own and the target's, so the strength still means "this far".
    """
    if strength <= 0.0:
        return pixels
    lab = rgb_to_lab(pixels)
    fit = fit_grading(lab, target, strength, method)
    graded = fit.apply(lab)
    return to_uint8(land(graded, fit).apply(graded))


def cube_lut(
    source_pixels: np.ndarray,
    target: Grading,
    size: int = 33,
    method: str = "mk",
    strength: float = 1.0,
    title: str = "Kiln agentic grading",
) -> str:
    """The transfer of ``source_pixels`` to ``target`` as an Adobe/Resolve ``.cube`` 3D
    LUT of ``size``³ entries (red varies fastest, as the format requires): ``transfer``'s
    maps, fitted on the source, evaluated on the grid (a colour -> colour function once
    fitted, so the LUT holds it up to its grid spacing)."""
    if not 2 <= size <= 256:
        raise ValueError(f"a .cube LUT has 2-256 points per axis, got {size}")
    lab = rgb_to_lab(source_pixels)
    fit = fit_grading(lab, target, strength, method)
    landing = land(fit.apply(lab), fit)
    axis = np.linspace(0.0, 1.0, size, dtype=np.float32)
    blue, green, red = np.meshgrid(axis, axis, axis, indexing="ij")
    grid = np.stack([red, green, blue], axis=-1).reshape(1, -1, 3)
    mapped = landing.apply(fit.apply(rgb_to_lab(grid)))[0]
    lines = [f'TITLE "{title}"', f"LUT_3D_SIZE {size}", "DOMAIN_MIN 0 0 0", "DOMAIN_MAX 1 1 1"]
    lines += [f"{r:.6f} {g:.6f} {b:.6f}" for r, g, b in mapped]
    return "\n".join(lines) + "\n"


def read_cube(text: str) -> np.ndarray:
    """A ``.cube`` 3D LUT as an array [b, g, r, 3] (for applying and for tests)."""
    size = None
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("LUT_3D_SIZE"):
            size = int(line.split()[1])
        elif line[0].isdigit() or line[0] in "-.":
            rows.append([float(v) for v in line.split()])
    if size is None or len(rows) != size**3:
        raise ValueError("not a 3D .cube LUT")
    return np.asarray(rows, np.float32).reshape(size, size, size, 3)


def apply_cube(pixels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Apply a [b, g, r, 3] LUT to uint8 RGB by trilinear interpolation."""
    from scipy.ndimage import map_coordinates

    size = lut.shape[0]
    rgb = as_float_rgb(pixels) * (size - 1)
    coords = [rgb[..., 2], rgb[..., 1], rgb[..., 0]]
    channels = [map_coordinates(lut[..., c], coords, order=1, mode="nearest") for c in range(3)]
    return to_uint8(np.stack(channels, axis=-1))
