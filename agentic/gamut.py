"""Bringing CIELAB colours into sRGB without clipping each channel.

A transfer can move colours out of the sRGB cube: lighter than white, darker than black,
more saturated than a display shows. Clipping each channel on its own piles all of them
on the cube's faces, shifts their hue and lightness, and, the pile being lopsided, moves
the statistics the transfer aimed at (issue 17 measured it). Instead:

- L* rolls off: above ``SHOULDER`` toward white, below ``TOE`` toward black, by
  ``knee + d / (1 + a d)`` (slope 1 at the knee, order kept: two highlights a shade apart
  stay apart, closer). ``a`` is fitted to the image: 0 when nothing crosses the limit,
  so an image already in range passes unchanged; otherwise the ``FIT_QUANTILE`` of the
  values lands on the limit and only the rarer ones past it are clipped;
- saturation that is still out of the cube moves along the line to the grey of equal
  luminance until it is inside (in linear RGB that line keeps luminance and hue): a
  saturated reference's colours stay on the cube's surface, where its own are.

The cube aimed at is ``MARGIN`` inside the true one: a colour on the true face rounds to 0
or 255, and a delivered 0 or 255 is what issue 17's clipping check counts as detail lost;
colours that pile up against the face show in its near-extreme count instead. A fitted
roll-off is a fixed colour -> colour function, so a LUT can hold it.

``srgb_of_lab`` and ``lab_of_srgb`` convert both ways without clipping (the sRGB curve
extended oddly below 0, CIELAB's linear segment below its knee), so a transfer can work
in sRGB, the space whose gamut is the cube, on colours still outside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOE = 8.0  # L* below which shadows roll off toward black
SHOULDER = 92.0  # L* above which highlights roll off toward white
FIT_QUANTILE = 0.999  # the rarest values the roll-off still makes room for
MARGIN = 1.5 / 255.0  # how far (sRGB, 0-1) inside 0 and 1 the cube aimed at lies

# D65 white and the sRGB primaries, as OpenCV's Lab conversion uses them.
_WHITE = np.array([0.950456, 1.0, 1.088754])
_XYZ_TO_RGB = np.array(
    [
        [3.240479, -1.53715, -0.498535],
        [-0.969256, 1.875992, 0.041556],
        [0.055648, -0.204043, 1.057311],
    ]
)
_RGB_TO_XYZ = np.linalg.inv(_XYZ_TO_RGB)
_LUMINANCE = _RGB_TO_XYZ[1]  # Y of linear R, G, B
_DELTA = 6.0 / 29.0


def _decode(encoded: float) -> float:
    return encoded / 12.92 if encoded <= 0.04045 else ((encoded + 0.055) / 1.055) ** 2.4


def _lightness(luminance: float) -> float:
    return 116.0 * luminance ** (1.0 / 3.0) - 16.0 if luminance > _DELTA**3 else 903.3 * luminance


_LOW, _HIGH = _decode(MARGIN), _decode(1.0 - MARGIN)  # the inner cube, in linear RGB
_BLACK, _WHITE_L = _lightness(_LOW), _lightness(_HIGH)  # the L* of its black and white


def lab_to_linear(lab: np.ndarray) -> np.ndarray:
    """CIELAB (..., 3) -> linear sRGB (..., 3), float64, not clipped."""
    lab = np.asarray(lab, np.float64)
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    xyz = np.where(f > _DELTA, f**3, 3.0 * _DELTA**2 * (f - 4.0 / 29.0)) * _WHITE
    return xyz @ _XYZ_TO_RGB.T


def linear_to_lab(linear: np.ndarray) -> np.ndarray:
    """Linear sRGB (..., 3) -> CIELAB (..., 3), float64; the inverse of ``lab_to_linear``
    (out-of-range values included)."""
    t = (np.asarray(linear, np.float64) @ _RGB_TO_XYZ.T) / _WHITE
    f = np.where(t > _DELTA**3, np.cbrt(t), t / (3.0 * _DELTA**2) + 4.0 / 29.0)
    return np.stack(
        [
            116.0 * f[..., 1] - 16.0,
            500.0 * (f[..., 0] - f[..., 1]),
            200.0 * (f[..., 1] - f[..., 2]),
        ],
        axis=-1,
    )


def srgb_of_lab(lab: np.ndarray) -> np.ndarray:
    """CIELAB (..., 3) -> sRGB-encoded RGB (0-1 inside the cube), float64, not clipped."""
    linear = lab_to_linear(lab)
    size = np.abs(linear)
    encoded = np.where(size <= 0.0031308, 12.92 * size, 1.055 * np.power(size, 1.0 / 2.4) - 0.055)
    return np.sign(linear) * encoded


def lab_of_srgb(rgb: np.ndarray) -> np.ndarray:
    """sRGB-encoded RGB (..., 3), in the cube or not -> CIELAB (..., 3), float64."""
    rgb = np.asarray(rgb, np.float64)
    size = np.abs(rgb)
    linear = np.where(size <= 0.04045, size / 12.92, ((size + 0.055) / 1.055) ** 2.4)
    return linear_to_lab(np.sign(rgb) * linear)


def encode_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear RGB -> sRGB-encoded RGB, both clipped to [0, 1] (float32)."""
    linear = np.clip(linear, 0.0, 1.0)
    encoded = np.where(
        linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1.0 / 2.4) - 0.055
    )
    return np.clip(encoded, 0.0, 1.0).astype(np.float32)


def into_cube(linear: np.ndarray) -> np.ndarray:
    """Linear RGB moved along the line to its grey of equal luminance until it is inside
    the inner cube (colours already inside stay)."""
    grey = np.clip(linear @ _LUMINANCE, _LOW, _HIGH)[..., None]
    away = linear - grey
    # Per channel, the share of ``away`` that reaches the face it heads for; the
    # nearest face decides.
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(
            away > 0.0, (_HIGH - grey) / away, np.where(away < 0.0, (_LOW - grey) / away, np.inf)
        )
    scale = np.clip(np.min(room, axis=-1, keepdims=True), 0.0, 1.0)
    return np.clip(grey + scale * away, _LOW, _HIGH)


def _fit(values: np.ndarray, knee: float, limit: float) -> float:
    """The ``a`` that brings the ``FIT_QUANTILE`` of ``values`` past ``knee`` onto
    ``limit`` (0 when it does not cross it). Either direction: a ``limit`` below
    ``knee`` rolls off downward."""
    over = (values - knee) / (limit - knee)  # in knee-to-limit spans; > 1 crosses
    far = float(np.quantile(over, FIT_QUANTILE)) if over.size else 0.0
    return 0.0 if far <= 1.0 else 1.0 - 1.0 / far


def _roll(values: np.ndarray, knee: float, limit: float, a: float) -> np.ndarray:
    span = limit - knee
    over = np.maximum((values - knee) / span, 0.0)
    rolled = knee + span * np.minimum(over / (1.0 + a * over), 1.0)
    return np.where(over > 0.0, rolled, values)


@dataclass(frozen=True)
class RollOff:
    """A fitted roll-off: ``a`` of the highlights' shoulder and of the shadows' toe."""

    shoulder: float = 0.0
    toe: float = 0.0

    @classmethod
    def fit(cls, lab: np.ndarray) -> RollOff:
        """The roll-off that brings (nearly) all of ``lab`` (..., 3) into L*'s range."""
        lightness = np.asarray(lab, np.float64)[..., 0].ravel()
        return cls(_fit(lightness, SHOULDER, _WHITE_L), _fit(lightness, TOE, _BLACK))

    def apply(self, lab: np.ndarray) -> np.ndarray:
        """CIELAB (..., 3) -> sRGB-encoded RGB in [0, 1] (float32)."""
        lab = np.array(lab, np.float64)
        lightness = _roll(lab[..., 0], SHOULDER, _WHITE_L, self.shoulder)
        lab[..., 0] = _roll(lightness, TOE, _BLACK, self.toe)
        return encode_srgb(into_cube(lab_to_linear(lab)))


def roll_off(lab: np.ndarray) -> np.ndarray:
    """``lab`` into sRGB (float32 in [0, 1]) by the roll-off fitted to itself."""
    return RollOff.fit(lab).apply(lab)
