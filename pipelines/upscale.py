"""Upscaling to any long side up to 7680 px (8K UHD): a learned upscaler in tiles, or
Lanczos where the caller asks for it.

    upscaler = Upscaler.load(Path(".../RealESRGAN_x4plus.safetensors"))
    pixels = upscale(image, UpscaleParams(long_side=7680), upscaler)   # uint8 HxWx3|4

Recipe: (1) the target size keeps the aspect ratio, long side ``long_side``; (2) the
model's factor is chained ``passes_for`` times, as often as its output stays within
twice the target, so the one final resample is a shrink by at most 2 or a stretch by
less than the factor; (3) each pass runs
in overlapping tiles whose seams are blended with linear ramps; (4) one Lanczos resample
lands on the exact size. An alpha channel (a background-removed image) is resampled with
Lanczos alone: a model trained on RGB photos has nothing to add to a mask.

Memory stays bounded at any size: a pass holds the model's activations for one tile, and
blends one *row of tiles* at a time into a float band that is normalised and written to
the uint8 output as soon as the next row can no longer touch it. What grows with the
target is only the uint8 output itself (and the previous pass's output).

Weights are loaded with spandrel (ESRGAN family and every architecture it knows), from
``.safetensors`` only: pickle files can run code when loaded (DESIGN.md §4).
``method="lanczos"`` is an explicit choice of the caller, never a silent fallback when
no upscaler is installed (``UpscalerMissing`` then).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.params import ParamError

logger = logging.getLogger(__name__)

MAX_LONG_SIDE = 7680  # 8K UHD's long side
METHODS = ("model", "lanczos")
DEFAULT_TILE = 256
DEFAULT_OVERLAP = 16
RESAMPLE_STRIP = 256  # output rows per strip of the final resample

# (tiles done, tiles in all passes) after each tile.
Progress = Callable[[int, int], None]


class UpscalerMissing(LookupError):
    """``method="model"`` with no upscaler installed: say so, never fall back silently."""


@dataclass(frozen=True)
class UpscaleParams:
    """One upscale: the target long side and how to get there.

    ``tile``/``overlap`` are in input pixels of each pass; ``tile=None`` runs each pass
    on the whole image at once (the benchmark's untiled baseline).
    """

    long_side: int
    method: str = "model"
    tile: int | None = DEFAULT_TILE
    overlap: int = DEFAULT_OVERLAP

    def checked(self) -> UpscaleParams:
        """Itself, or ``ParamError`` naming the bad field."""
        check_long_side(self.long_side)
        if self.method not in METHODS:
            raise ParamError("method", f"method must be one of {', '.join(METHODS)}")
        if self.tile is not None and not 0 <= 2 * self.overlap < self.tile:
            raise ParamError("tile", "tile must be more than twice the overlap")
        return self


def check_long_side(long_side: int, param: str = "long_side") -> int:
    """``long_side`` if it is 1..7680, else ``ParamError`` naming ``param``."""
    if isinstance(long_side, bool) or not isinstance(long_side, int):
        raise ParamError(param, f"{param} must be an integer")
    if not 1 <= long_side <= MAX_LONG_SIDE:
        raise ParamError(param, f"{param} must be 1-{MAX_LONG_SIDE} (8K UHD), got {long_side}")
    return long_side


def target_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(width, height) with the long side ``long_side`` and the same aspect ratio."""
    scale = long_side / max(width, height)
    if width >= height:
        return long_side, max(1, round(height * scale))
    return max(1, round(width * scale)), long_side


def passes_for(long_side: int, target: int, factor: int) -> int:
    """How many times to chain a ``factor``x model from ``long_side`` toward ``target``:
    the most passes whose output stays within twice the target (0 when shrinking).

    Overshooting and resampling down keeps the model's detail (4x then halve beats 2x
    by Lanczos); the 2x cap bounds the largest intermediate image (15360 px for 8K)."""
    if factor <= 1 or target <= long_side:
        return 0
    passes = 0
    while long_side * factor ** (passes + 1) <= 2 * target:
        passes += 1
    return passes


class Upscaler:
    """A loaded spandrel image model (``scale`` is its factor) on one device."""

    def __init__(self, descriptor: Any, device: str = "cpu") -> None:
        self.descriptor = descriptor
        self.device = device
        self.scale: int = int(descriptor.scale)
        self.minimum: int = int(descriptor.size_requirements.minimum)

    @classmethod
    def load(cls, path: Path, device: str = "cpu") -> Upscaler:
        """Load upscaler weights from a ``.safetensors`` file; anything else is refused."""
        import torch
        from spandrel import ImageModelDescriptor, ModelLoader

        path = Path(path)
        if path.suffix != ".safetensors":
            raise ValueError(f"{path.name}: upscalers load from .safetensors only (no pickles)")
        descriptor = ModelLoader(torch.device(device)).load_from_file(path)
        if not isinstance(descriptor, ImageModelDescriptor):
            raise ValueError(f"{path.name} is not an image-to-image model spandrel knows")
        descriptor.eval()
        if device.startswith("cuda") and descriptor.supports_half:
            descriptor.half()
        logger.info(
            "loaded upscaler %s (%s, x%d)",
            path.name,
            descriptor.architecture.name,
            descriptor.scale,
        )
        return cls(descriptor, device)

    def run(self, pixels: np.ndarray) -> np.ndarray:
        """One pass of the model on uint8 HxWx3, whole: uint8 (H*s)x(W*s)x3."""
        import torch

        dtype = next(self.descriptor.model.parameters()).dtype
        tensor = torch.from_numpy(np.array(pixels)).to(self.device)  # a writable copy
        tensor = tensor.permute(2, 0, 1)[None].to(dtype) / 255.0
        with torch.inference_mode():
            out = self.descriptor(tensor)
        out = (out[0].clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0)
        return out.cpu().numpy()

    def run_tiled(
        self,
        pixels: np.ndarray,
        tile: int,
        overlap: int,
        progress: Callable[[], None] | None = None,
    ) -> np.ndarray:
        """One pass in overlapping ``tile``-px tiles, blended a row of tiles at a time."""
        height, width = pixels.shape[:2]
        s = self.scale
        ys = tile_starts(height, tile, overlap)
        xs = tile_starts(width, tile, overlap)
        out = np.empty((height * s, width * s, 3), dtype=np.uint8)
        carry: tuple[np.ndarray, np.ndarray] | None = None  # rows the next band still adds to
        for row, y0 in enumerate(ys):
            y1 = min(y0 + tile, height)
            band = np.zeros(((y1 - y0) * s, width * s, 3), dtype=np.float32)
            weight = np.zeros(((y1 - y0) * s, width * s, 1), dtype=np.float32)
            if carry is not None:
                band[: len(carry[0])] += carry[0]
                weight[: len(carry[1])] += carry[1]
            wy = ramp((y1 - y0) * s, overlap * s, y0 > 0, y1 < height)
            for x0 in xs:
                x1 = min(x0 + tile, width)
                result = self.run(pixels[y0:y1, x0:x1])
                wx = ramp((x1 - x0) * s, overlap * s, x0 > 0, x1 < width)
                w = np.outer(wy, wx)[..., None]
                band[:, x0 * s : x1 * s] += result.astype(np.float32) * w
                weight[:, x0 * s : x1 * s] += w
                if progress is not None:
                    progress()
            # Rows above the next tile row's start are final: normalise and write them;
            # the rest is copied out so this band is freed before the next is made.
            done = ((ys[row + 1] if row + 1 < len(ys) else y1) - y0) * s
            carry = (band[done:].copy(), weight[done:].copy()) if done < len(band) else None
            _write_normalised(out[y0 * s : y0 * s + done], band[:done], weight[:done])
            del band, weight
        return out


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one axis: stride ``tile - overlap``, the last one flush with
    the edge (so it may overlap its neighbour by more; the blend weights absorb it)."""
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    starts.append(size - tile)
    return starts


def ramp(length: int, overlap: int, rise: bool, fall: bool) -> np.ndarray:
    """Blend weights along one axis of a tile: a linear rise over ``overlap`` px where a
    neighbour comes before, a fall where one comes after, 1 elsewhere. Never 0, so every
    output pixel has weight; neighbouring ramps sum to 1 across an overlap of that width."""
    w = np.ones(length, dtype=np.float32)
    if overlap <= 0:
        return w
    edge = (np.arange(min(overlap, length), dtype=np.float32) + 0.5) / overlap
    if rise:
        w[: len(edge)] = np.minimum(w[: len(edge)], edge)
    if fall:
        w[length - len(edge) :] = np.minimum(w[length - len(edge) :], edge[::-1])
    return w


def _write_normalised(out: np.ndarray, band: np.ndarray, weight: np.ndarray) -> None:
    # In place: a band of an 8K image is ~100 MB of float32; no temporaries of that size.
    np.divide(band, weight, out=band)
    np.rint(band, out=band)
    np.clip(band, 0, 255, out=band)
    out[...] = band


def resample(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Lanczos resample of uint8 HxW, HxWx3 or HxWx4 to ``size`` (width, height).

    Done in strips of ``RESAMPLE_STRIP`` output rows, each from its source rows plus the
    filter's reach, written into the output: a whole-image resize holds PIL's 4-byte
    pixels of the output and of its horizontal pass (~5x an 8K uint8 image) at once.
    Strips match the whole resize to within 1 level (rounding)."""
    from PIL import Image

    width, height = size
    src_h, src_w = pixels.shape[:2]
    if (src_w, src_h) == size:
        return pixels
    image = Image.fromarray(np.ascontiguousarray(pixels))
    lanczos = Image.Resampling.LANCZOS
    if width * height <= RESAMPLE_STRIP * RESAMPLE_STRIP * 4:
        return np.asarray(image.resize(size, lanczos))
    out = np.empty((height, width, *pixels.shape[2:]), dtype=np.uint8)
    step = src_h / height
    reach = math.ceil(3 * max(1.0, step)) + 2  # Lanczos-3 support in source rows, + slack
    for y0 in range(0, height, RESAMPLE_STRIP):
        y1 = min(height, y0 + RESAMPLE_STRIP)
        top = max(0, int(y0 * step) - reach)
        bottom = min(src_h, math.ceil(y1 * step) + reach)
        strip = image.crop((0, top, src_w, bottom))
        box = (0, y0 * step - top, src_w, y1 * step - top)
        out[y0:y1] = np.asarray(strip.resize((width, y1 - y0), lanczos, box=box))
    return out


def upscale(
    pixels: np.ndarray,
    params: UpscaleParams,
    upscaler: Upscaler | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """``pixels`` (uint8 HxWx3, or HxWx4 with alpha) at long side ``params.long_side``."""
    params = params.checked()
    height, width = pixels.shape[:2]
    size = target_size(width, height, params.long_side)
    alpha = pixels[..., 3] if pixels.shape[2] == 4 else None
    rgb = pixels[..., :3]
    if params.method == "model":
        if upscaler is None:
            raise UpscalerMissing(
                "no upscaler is installed (a [components] entry of kind upscaler); "
                'ask for method "lanczos" to resample instead'
            )
        rgb = _chain(rgb, size, params, upscaler, progress)
    rgb = resample(rgb, size)
    if alpha is None:
        return rgb
    return np.dstack([rgb, resample(alpha, size)])


def _chain(
    rgb: np.ndarray,
    size: tuple[int, int],
    params: UpscaleParams,
    upscaler: Upscaler,
    progress: Progress | None,
) -> np.ndarray:
    height, width = rgb.shape[:2]
    passes = passes_for(max(width, height), max(size), upscaler.scale)
    if min(width, height) < upscaler.minimum:
        passes = 0  # too small for the model's convolutions; Lanczos alone
    total = 0
    h, w = height, width
    for _ in range(passes):
        total += (
            1
            if params.tile is None
            else len(tile_starts(h, params.tile, params.overlap))
            * len(tile_starts(w, params.tile, params.overlap))
        )
        h, w = h * upscaler.scale, w * upscaler.scale
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    for _ in range(passes):
        if params.tile is None:
            rgb = upscaler.run(rgb)
            tick()
        else:
            rgb = upscaler.run_tiled(rgb, params.tile, params.overlap, tick)
    return rgb
