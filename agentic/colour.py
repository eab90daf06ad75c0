"""Colour science shared by the extractors: sRGB <-> CIELAB (D65), ΔE2000, downsampling.

Lab conversion runs through OpenCV on float32 (the exact sRGB transfer curve, D65 white,
L* in 0-100), a few times faster than scikit-image on the sizes extraction works at;
ΔE2000 is scikit-image's CIEDE2000.
"""

from __future__ import annotations

import numpy as np

# Extraction works on a copy whose long side is at most this: statistics of a 1024 px
# photograph and of its 256 px thumbnail differ by well under a ΔE unit.
WORK_SIDE = 256


def as_float_rgb(pixels: np.ndarray) -> np.ndarray:
    """uint8 (or integer 0-255) HxWx3, or float in [0, 1], -> float32 HxWx3 in [0, 1]."""
    pixels = np.asarray(pixels)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected HxWx3 RGB pixels, got shape {pixels.shape}")
    if np.issubdtype(pixels.dtype, np.integer):  # 0-255
        return pixels.astype(np.float32) / 255.0
    return np.clip(pixels.astype(np.float32), 0.0, 1.0)


def downsample(pixels: np.ndarray, side: int = WORK_SIDE) -> np.ndarray:
    """``pixels`` with its long side at most ``side`` (area averaging), same dtype."""
    import cv2

    height, width = pixels.shape[:2]
    scale = side / max(height, width)
    if scale >= 1.0:
        return pixels
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)


def rgb_to_lab(pixels: np.ndarray) -> np.ndarray:
    """sRGB (uint8, or float in [0, 1]) -> float32 CIELAB, same leading shape."""
    import cv2

    rgb = as_float_rgb(pixels) if pixels.ndim == 3 else _flat_rgb(pixels)
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2Lab)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """float CIELAB HxWx3 -> float32 sRGB in [0, 1] (out-of-gamut colours clipped)."""
    import cv2

    rgb = cv2.cvtColor(np.ascontiguousarray(lab, dtype=np.float32), cv2.COLOR_Lab2RGB)
    return np.clip(rgb, 0.0, 1.0)


def lab_to_uint8(lab: np.ndarray) -> np.ndarray:
    """float CIELAB HxWx3 -> uint8 sRGB."""
    return to_uint8(lab_to_rgb(lab))


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """float RGB in [0, 1] -> uint8, rounded."""
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def _flat_rgb(colours: np.ndarray) -> np.ndarray:
    colours = np.asarray(colours)
    if colours.ndim != 2 or colours.shape[1] != 3:
        raise ValueError(f"expected Nx3 or HxWx3 colours, got {colours.shape}")
    return as_float_rgb(colours[None])


def lab_of(colours: np.ndarray) -> np.ndarray:
    """Nx3 sRGB colours (uint8 or [0, 1] floats) -> Nx3 CIELAB."""
    return rgb_to_lab(_flat_rgb(colours))[0]


def rgb_of_lab(lab: np.ndarray) -> np.ndarray:
    """Nx3 CIELAB -> Nx3 uint8 sRGB."""
    return lab_to_uint8(np.asarray(lab, dtype=np.float32).reshape(1, -1, 3))[0]


def delta_e(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 between colours (broadcast over leading axes)."""
    from skimage.color import deltaE_ciede2000

    return deltaE_ciede2000(np.asarray(lab1, np.float64), np.asarray(lab2, np.float64))


def delta_e_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ΔE2000 of every colour of ``a`` (Nx3 Lab) against every colour of ``b`` (Mx3): NxM."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return delta_e(a[:, None, :], b[None, :, :])


def hex_of(rgb: np.ndarray) -> str:
    """``#rrggbb`` of a uint8 RGB triple."""
    r, g, b = (int(v) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"
