"""Colour palette: k-means in CIELAB on a downsampled copy, near-duplicates merged by ΔE2000.

k-means over-segments on purpose (``CLUSTERS`` centres); clusters closer than
``MERGE_DELTA_E`` are then merged pairwise, closest first, into their share-weighted mean,
so one flat colour split across several centres comes back as one swatch. Swatches under
``MIN_SHARE`` (edge pixels blended by the downsampling, specks) are dropped and the shares
of the rest renormalised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agentic.colour import delta_e_matrix, downsample, hex_of, rgb_of_lab, rgb_to_lab

# Palette extraction works on this many pixels at most along the long side.
PALETTE_SIDE = 96
CLUSTERS = 8
MERGE_DELTA_E = 8.0
MIN_SHARE = 0.02
MAX_SWATCHES = 8
SEED = 7


@dataclass(frozen=True)
class Swatch:
    """One palette colour: its CIELAB value and the share of the image it covers (0-1)."""

    lab: tuple[float, float, float]
    share: float

    @property
    def hex(self) -> str:
        return hex_of(rgb_of_lab(np.array([self.lab]))[0])

    def to_json(self) -> dict:
        return {
            "hex": self.hex,
            "lab": [round(v, 2) for v in self.lab],
            "share": round(self.share, 4),
        }

    @classmethod
    def from_json(cls, data: dict) -> Swatch:
        lab = data["lab"]
        if len(lab) != 3:
            raise ValueError("a swatch's lab has three values")
        return cls(tuple(float(v) for v in lab), float(data["share"]))  # type: ignore[arg-type]


def extract_palette(pixels: np.ndarray, clusters: int = CLUSTERS) -> list[Swatch]:
    """The palette of uint8 RGB ``pixels``, largest share first."""
    return palette_of_lab(rgb_to_lab(downsample(pixels, PALETTE_SIDE)).reshape(-1, 3), clusters)


def palette_of_lab(lab: np.ndarray, clusters: int = CLUSTERS) -> list[Swatch]:
    """The palette of Nx3 CIELAB colours (in or out of the sRGB gamut), largest first."""
    import cv2

    lab = np.ascontiguousarray(lab, dtype=np.float32)
    if len(lab) == 1:
        # One pixel (a 1x1 reference) is its own palette; OpenCV's k-means would read a
        # single row as three one-channel samples.
        return [Swatch(tuple(float(v) for v in lab[0]), 1.0)]  # type: ignore[arg-type]
    k = min(clusters, len(lab))
    cv2.setRNGSeed(SEED)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    _, labels, centres = cv2.kmeans(lab, k, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    counts = np.bincount(labels.ravel(), minlength=k).astype(np.float64)
    return merge_swatches(centres.astype(np.float64), counts / counts.sum())


def merge_swatches(
    labs: np.ndarray,
    shares: np.ndarray,
    threshold: float = MERGE_DELTA_E,
    min_share: float = MIN_SHARE,
    limit: int = MAX_SWATCHES,
) -> list[Swatch]:
    """Merge colours closer than ``threshold`` ΔE2000 (closest pair first) into their
    share-weighted mean; drop those under ``min_share``; keep the ``limit`` largest."""
    labs = [np.asarray(v, np.float64) for v in labs]
    shares = [float(s) for s in shares]
    while len(labs) > 1:
        distances = delta_e_matrix(np.array(labs), np.array(labs))
        np.fill_diagonal(distances, np.inf)
        i, j = np.unravel_index(np.argmin(distances), distances.shape)
        if distances[i, j] >= threshold:
            break
        total = shares[i] + shares[j]
        merged = (labs[i] * shares[i] + labs[j] * shares[j]) / max(total, 1e-12)
        for index in sorted((i, j), reverse=True):
            del labs[index], shares[index]
        labs.append(merged)
        shares.append(total)
    kept = sorted(
        ((s, lab) for s, lab in zip(shares, labs, strict=True) if s >= min_share),
        key=lambda pair: -pair[0],
    )[:limit]
    if not kept:  # every colour a speck: keep the largest
        kept = [max(zip(shares, labs, strict=True), key=lambda pair: pair[0])]
    total = sum(s for s, _ in kept)
    return [Swatch(tuple(float(v) for v in lab), s / total) for s, lab in kept]  # type: ignore[arg-type]


def blend_palettes(palettes: list[list[Swatch]], weights: list[float]) -> list[Swatch]:
    """One palette from several, each swatch's share scaled by its palette's weight."""
    labs = [s.lab for p in palettes for s in p]
    shares = [s.share * w for p, w in zip(palettes, weights, strict=True) for s in p]
    return merge_swatches(np.array(labs), np.array(shares))


def palette_distance(target: list[Swatch], candidate: list[Swatch]) -> float:
    """Mean ΔE2000 between matched swatches: each swatch of either palette to its nearest
    in the other, weighted by its share (symmetric, so a missing colour and an extra one
    both count)."""
    t = np.array([s.lab for s in target])
    c = np.array([s.lab for s in candidate])
    distances = delta_e_matrix(t, c)
    t_share = np.array([s.share for s in target])
    c_share = np.array([s.share for s in candidate])
    forward = float((distances.min(axis=1) * t_share).sum() / t_share.sum())
    backward = float((distances.min(axis=0) * c_share).sum() / c_share.sum())
    return (forward + backward) / 2.0


def palette_lab(lab: np.ndarray, target: list[Swatch], strength: float) -> np.ndarray:
    """Move float CIELAB ``lab`` (HxWx3)'s own palette toward ``target`` at ``strength``
    (0-1); float CIELAB back, not clipped (the caller rolls it into the sRGB cube).

    The image's swatches are matched one to one with the target's (minimum total ΔE2000,
    Hungarian); every pixel moves by the offsets of its soft-assigned swatches, so flat
    areas take the target colour and gradients stay smooth.
    """
    from scipy.optimize import linear_sum_assignment

    lab = np.asarray(lab, np.float64)
    if strength <= 0.0:
        return lab
    # The image's own palette is read off the colours it is about to move (a point
    # sample at most PALETTE_SIDE long), not off a clipped rendering of them: offsets
    # from clipped swatches would push colours already out of gamut further out.
    step = max(1, -(-max(lab.shape[:2]) // PALETTE_SIDE))
    own = palette_of_lab(lab[::step, ::step].reshape(-1, 3))
    own_lab = np.array([s.lab for s in own])
    target_lab = np.array([s.lab for s in target])
    rows, cols = linear_sum_assignment(delta_e_matrix(own_lab, target_lab))
    offsets = np.zeros_like(own_lab)
    offsets[rows] = target_lab[cols] - own_lab[rows]
    flat = lab.reshape(-1, 3)
    # Soft assignment by Euclidean Lab distance (a ΔE2000 per pixel would cost 10x more).
    d2 = ((flat[:, None, :] - own_lab[None, :, :]) ** 2).sum(axis=2)
    logits = -d2 / (2.0 * 10.0**2)
    logits -= logits.max(axis=1, keepdims=True)
    soft = np.exp(logits)
    soft /= soft.sum(axis=1, keepdims=True)
    return (flat + strength * (soft @ offsets)).reshape(lab.shape)


def palette_transfer(pixels: np.ndarray, target: list[Swatch], strength: float) -> np.ndarray:
    """``palette_lab`` on uint8 RGB ``pixels``, rolled into the sRGB cube; uint8 RGB back."""
    from agentic.colour import to_uint8
    from agentic.gamut import roll_off

    if strength <= 0.0:
        return pixels
    return to_uint8(roll_off(palette_lab(rgb_to_lab(pixels), target, strength)))
