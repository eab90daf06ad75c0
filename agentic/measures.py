"""How closely an image carries a reference's colour, as issue 17 measures it.

- ``lab_moments``: mean and standard deviation of L*, a*, b* over every pixel, the six
  numbers a colourist reads off a grading; ``moment_distance`` is the Euclidean distance
  between two images' moments (Lab units), ``moment_cut`` how much of a plain image's
  distance to the reference a graded one removed.
- ``mean_delta_e``: ΔE2000 between the two images' mean colours.
- ``clipped_share``: the share of pixels with a channel at 0 or 255, over a mask;
  ``skin_or_neutral`` is the mask that matters most (clipped skin or greys read as
  damage, clipped saturated colours much less); ``near_extreme_share`` counts a channel
  within ``NEAR`` code values of 0 or 255 instead, so colours piled just inside the
  ends (a roll-off's floor) show too.

Statistics are taken on every pixel at the image's own size: area-averaging a reference
down would shrink its spread, and the spread is half of what is compared.
"""

from __future__ import annotations

import numpy as np

from agentic.colour import delta_e, rgb_to_lab

# Below this chroma (C*ab) a colour reads as grey.
NEUTRAL_CHROMA = 8.0
# The skin locus in CIELAB: warm hues of moderate chroma, from olive to rosy, any shade.
SKIN_HUE = (20.0, 70.0)  # degrees of h_ab
SKIN_CHROMA = (8.0, 50.0)
NEAR = 2  # code values from 0 or 255 that count as near the ends


def lab_moments(pixels: np.ndarray) -> np.ndarray:
    """Mean and standard deviation of L*, a*, b* of uint8 RGB ``pixels``: six numbers."""
    lab = rgb_to_lab(pixels).reshape(-1, 3).astype(np.float64)
    return np.concatenate([lab.mean(axis=0), lab.std(axis=0)])


def moment_distance(pixels: np.ndarray, reference: np.ndarray) -> float:
    """Euclidean distance between the Lab moments of two images (Lab units)."""
    return float(np.linalg.norm(lab_moments(pixels) - lab_moments(reference)))


def moment_cut(plain: np.ndarray, graded: np.ndarray, reference: np.ndarray) -> float:
    """The share of ``plain``'s moment distance to ``reference`` that ``graded`` removed:
    1 lands on the reference's moments, 0 is no better than plain, below 0 is worse."""
    before = moment_distance(plain, reference)
    return 1.0 - moment_distance(graded, reference) / max(before, 1e-9)


def mean_delta_e(pixels: np.ndarray, reference: np.ndarray) -> float:
    """ΔE2000 between the mean Lab colours of two images."""
    return float(delta_e(lab_moments(pixels)[:3], lab_moments(reference)[:3]))


def skin_or_neutral(pixels: np.ndarray) -> np.ndarray:
    """HxW mask of pixels whose colour is grey (chroma under ``NEUTRAL_CHROMA``) or
    skin-like (hue and chroma inside the skin locus)."""
    lab = rgb_to_lab(pixels).astype(np.float64)
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    hue = np.degrees(np.arctan2(lab[..., 2], lab[..., 1])) % 360.0
    skin = (
        (hue >= SKIN_HUE[0])
        & (hue <= SKIN_HUE[1])
        & (chroma >= SKIN_CHROMA[0])
        & (chroma <= SKIN_CHROMA[1])
    )
    return (chroma < NEUTRAL_CHROMA) | skin


def clipped_share(pixels: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Share of the pixels (under ``mask``, all by default) with any channel at 0 or 255."""
    clipped = ((pixels == 0) | (pixels == 255)).any(axis=-1)
    if mask is None:
        return float(clipped.mean())
    return float(clipped[mask].mean()) if mask.any() else 0.0


def near_extreme_share(pixels: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Share of the pixels (under ``mask``) with a channel within ``NEAR`` of 0 or 255."""
    near = ((pixels <= NEAR) | (pixels >= 255 - NEAR)).any(axis=-1)
    if mask is None:
        return float(near.mean())
    return float(near[mask].mean()) if mask.any() else 0.0
