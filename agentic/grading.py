"""Colour grading: what a reference's colour looks like, and moving an image toward it.

A grading is the Lab mean and covariance of an image (the "look": its cast, its
saturation, how its colours co-vary) and per-channel RGB tone curves (quantiles). It is
applied to another image by a linear colour transfer in Lab, at a strength:

- ``reinhard``: per-channel mean and standard deviation (Reinhard et al. 2001, in Lab);
- ``mk``: the Monge–Kantorovich linear map, the optimal transport map between the two
  Gaussians (Pitié & Kokaram 2007), written here: the library usually used for it is GPL.

``grading_distance`` is the 2-Wasserstein distance between the two Gaussians, in Lab
units: exactly what the MK map drives to zero, so it is the critique's measure too.
A grading exports as a ``.cube`` 3D LUT of the transfer from a source image to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from agentic.colour import as_float_rgb, downsample, lab_to_rgb, rgb_to_lab, to_uint8

CURVE_POINTS = 17
METHODS = ("mk", "reinhard")
# Regularises a near-singular covariance (a flat image) before square roots and inverses.
EPS = 1e-3


@dataclass(frozen=True)
class Grading:
    """Lab mean (3), Lab covariance (3x3) and RGB tone curves (3 x CURVE_POINTS, 0-1)."""

    mean: np.ndarray
    cov: np.ndarray
    curves: np.ndarray

    def to_json(self) -> dict:
        return {
            "lab_mean": [round(float(v), 3) for v in self.mean],
            "lab_cov": [[round(float(v), 3) for v in row] for row in self.cov],
            "tone_curves": {
                channel: [round(float(v), 4) for v in curve]
                for channel, curve in zip("rgb", self.curves, strict=True)
            },
        }

    @classmethod
    def from_json(cls, data: dict) -> Grading:
        mean = np.asarray(data["lab_mean"], np.float64)
        cov = np.asarray(data["lab_cov"], np.float64)
        curves = np.asarray([data["tone_curves"][c] for c in "rgb"], np.float64)
        if mean.shape != (3,) or cov.shape != (3, 3) or curves.shape != (3, CURVE_POINTS):
            raise ValueError("a grading has a 3-value lab_mean, a 3x3 lab_cov and 3 curves")
        return cls(mean, (cov + cov.T) / 2.0, curves)


def lab_stats(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of Lab pixels."""
    flat = lab.reshape(-1, 3).astype(np.float64)
    return flat.mean(axis=0), np.cov(flat, rowvar=False)


def extract_grading(pixels: np.ndarray) -> Grading:
    """The grading of uint8 RGB ``pixels`` (measured on a downsampled copy)."""
    small = downsample(pixels)
    mean, cov = lab_stats(rgb_to_lab(small))
    rgb = as_float_rgb(small).reshape(-1, 3)
    curves = np.quantile(rgb, np.linspace(0.0, 1.0, CURVE_POINTS), axis=0).T
    return Grading(mean, cov, curves)


def blend_gradings(gradings: list[Grading], weights: list[float]) -> Grading:
    """Weighted mean of means, covariances and curves (a blend of looks, not the pooled
    distribution: two opposite casts average to neutral instead of a wide spread)."""
    w = np.asarray(weights, np.float64)
    w = w / w.sum()
    return Grading(
        sum(wi * g.mean for wi, g in zip(w, gradings, strict=True)),
        sum(wi * g.cov for wi, g in zip(w, gradings, strict=True)),
        sum(wi * g.curves for wi, g in zip(w, gradings, strict=True)),
    )


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def _inv_sqrtm(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors / np.sqrt(np.clip(values, EPS, None))) @ vectors.T


def grading_distance(a: Grading, b: Grading) -> float:
    """2-Wasserstein distance between the Lab Gaussians of two gradings (Lab units)."""
    root_a = _sqrtm(a.cov)
    cross = _sqrtm(root_a @ b.cov @ root_a)
    trace = np.trace(a.cov) + np.trace(b.cov) - 2.0 * np.trace(cross)
    return float(np.sqrt(max(float(np.sum((a.mean - b.mean) ** 2)) + max(trace, 0.0), 0.0)))


def mk_matrix(source_cov: np.ndarray, target_cov: np.ndarray) -> np.ndarray:
    """The Monge–Kantorovich linear map between two covariances:
    T = Σs^-½ (Σs^½ Σt Σs^½)^½ Σs^-½, the unique symmetric positive map with T Σs T = Σt."""
    eye = np.eye(3) * EPS
    root = _sqrtm(source_cov + eye)
    inv_root = _inv_sqrtm(source_cov + eye)
    return inv_root @ _sqrtm(root @ (target_cov + eye) @ root) @ inv_root


def lab_transform(
    source: Grading, target: Grading, method: str = "mk", strength: float = 1.0
) -> Callable[[np.ndarray], np.ndarray]:
    """The Lab -> Lab map that moves ``source``'s statistics to ``target``'s at
    ``strength`` (0: identity, 1: the full transfer)."""
    if method not in METHODS:
        raise ValueError(f"unknown transfer method {method!r}; known: {', '.join(METHODS)}")
    if method == "mk":
        matrix = mk_matrix(source.cov, target.cov)
    else:
        source_sd = np.sqrt(np.clip(np.diag(source.cov), EPS, None))
        matrix = np.diag(np.sqrt(np.clip(np.diag(target.cov), 0.0, None)) / source_sd)
    # Blend the maps, not the images: at strength s, x -> x + s (T(x - μs) + μt - x).
    blended = (1.0 - strength) * np.eye(3) + strength * matrix
    offset = strength * (target.mean - matrix @ source.mean)

    def apply(lab: np.ndarray) -> np.ndarray:
        flat = lab.reshape(-1, 3).astype(np.float64) @ blended.T + offset
        return flat.reshape(lab.shape).astype(np.float32)

    return apply


def transfer(
    pixels: np.ndarray,
    target: Grading,
    strength: float = 1.0,
    method: str = "mk",
    passes: int = 3,
) -> np.ndarray:
    """``pixels`` (uint8 RGB) graded toward ``target`` at ``strength``; uint8 RGB back.

    Gamut clipping after a big move (a dark photograph stretched to a bright, wide look)
    leaves the result short of the target; each further pass re-measures and moves again
    from where the last one landed, so ``passes`` linear steps undo most of the clipping.
    At a strength below 1 the first pass is the blend and later passes aim at the blended
    statistics, so the strength still means "this far".
    """
    if strength <= 0.0:
        return pixels
    lab = rgb_to_lab(pixels)
    start = _grading_of_lab(rgb_to_lab(downsample(pixels)))
    goal = Grading(
        (1.0 - strength) * start.mean + strength * target.mean,
        (1.0 - strength) * start.cov + strength * target.cov,
        target.curves,
    )
    current = start
    for _ in range(passes):
        lab = rgb_to_lab(lab_to_rgb(lab_transform(current, goal, method, 1.0)(lab)))
        current = _grading_of_lab(rgb_to_lab(downsample(lab_to_rgb(lab))))
    return to_uint8(lab_to_rgb(lab))


def _grading_of_lab(lab: np.ndarray) -> Grading:
    mean, cov = lab_stats(lab)
    return Grading(mean, cov, np.zeros((3, CURVE_POINTS)))


def cube_lut(
    source_pixels: np.ndarray,
    target: Grading,
    size: int = 33,
    method: str = "mk",
    strength: float = 1.0,
    title: str = "Kiln agentic grading",
) -> str:
    """The transfer of ``source_pixels`` to ``target`` as an Adobe/Resolve ``.cube`` 3D
    LUT of ``size``³ entries (red varies fastest, as the format requires): the single
    linear map of ``transfer(..., passes=1)``, which a LUT can hold exactly."""
    if not 2 <= size <= 256:
        raise ValueError(f"a .cube LUT has 2-256 points per axis, got {size}")
    mean, cov = lab_stats(rgb_to_lab(downsample(source_pixels)))
    source = Grading(mean, cov, np.zeros((3, CURVE_POINTS)))
    axis = np.linspace(0.0, 1.0, size, dtype=np.float32)
    blue, green, red = np.meshgrid(axis, axis, axis, indexing="ij")
    grid = np.stack([red, green, blue], axis=-1).reshape(1, -1, 3)
    mapped = lab_to_rgb(lab_transform(source, target, method, strength)(rgb_to_lab(grid)))[0]
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
