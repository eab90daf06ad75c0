"""Background removal: a salient-object segmentation model (ONNX) gives the alpha.

    remover = BackgroundRemover.load(Path(".../u2net.onnx"))
    rgba = remove_background(pixels, remover)     # uint8 HxWx4, alpha = the subject

Runs the model with onnxruntime directly rather than through rembg: rembg would pull a
dozen packages (pymatting, scikit-image, pooch, ...), wants its model file inside its own
folder (``U2NET_HOME``) and downloads a missing one, while what it does for u2net / isnet
is the few lines below: resize to the model's square input, normalise, run, take the
first output as the mask. Any model with that interface works (u2net, u2netp, isnet,
silueta; birefnet takes 1024 px and mean/std as ImageNet's): the catalog entry's
options ``size``, ``mean`` and ``std`` say which, defaulting to u2net's.

A clean alpha: the model's map is stretched to 0..1 (rembg does the same), then edges
narrower than the model can see are kept soft while everything below ``low`` becomes
fully transparent and above ``high`` fully opaque, so no faint halo of background stays
in the PNG. Transparent pixels have their colour zeroed: the cut-out carries nothing of
the background that a viewer ignoring alpha would show.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

U2NET_SIZE = 320
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class MaskCleanup:
    """Alpha below ``low`` is 0, above ``high`` 255, linear between (map in 0..1)."""

    low: float = 0.2
    high: float = 0.8


class BackgroundRemover:
    """An ONNX segmentation session and the input convention of its model."""

    def __init__(
        self,
        session: Any,
        size: int = U2NET_SIZE,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
    ) -> None:
        self.session = session
        self.input_name: str = session.get_inputs()[0].name
        self.size = size
        self.mean = np.array(mean, np.float32)
        self.std = np.array(std, np.float32)

    @classmethod
    def load(
        cls, path: Path, options: Mapping[str, Any] | None = None, device: str = "cpu"
    ) -> BackgroundRemover:
        """Open ``path`` (an ``.onnx`` file) with onnxruntime on ``device``."""
        import onnxruntime as ort

        path = Path(path)
        if path.suffix != ".onnx":
            raise ValueError(f"{path.name}: background removal loads .onnx models only")
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        session = ort.InferenceSession(str(path), providers=providers)
        options = dict(options or {})
        logger.info("loaded background removal model %s (%s)", path.name, providers[0])
        return cls(
            session,
            size=int(options.get("size", U2NET_SIZE)),
            mean=tuple(options.get("mean", IMAGENET_MEAN)),
            std=tuple(options.get("std", IMAGENET_STD)),
        )

    def mask(self, pixels: np.ndarray) -> np.ndarray:
        """The model's subject map of uint8 HxWx3 ``pixels``: float32 HxW in 0..1."""
        from PIL import Image

        height, width = pixels.shape[:2]
        image = Image.fromarray(np.ascontiguousarray(pixels[..., :3]))
        square = image.resize((self.size, self.size), Image.Resampling.LANCZOS)
        x = (np.asarray(square, np.float32) / 255.0 - self.mean) / self.std
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        prediction = self.session.run(None, {self.input_name: x})[0][0, 0].astype(np.float32)
        low, high = float(prediction.min()), float(prediction.max())
        prediction = (prediction - low) / max(high - low, 1e-6)
        back = Image.fromarray(prediction, mode="F").resize(
            (width, height), Image.Resampling.BILINEAR
        )
        return np.clip(np.asarray(back), 0.0, 1.0)


def clean_alpha(mask: np.ndarray, cleanup: MaskCleanup = MaskCleanup()) -> np.ndarray:
    """A 0..1 map as a uint8 alpha: crisp outside ``low..high``, a soft ramp within."""
    ramp = (mask - cleanup.low) / (cleanup.high - cleanup.low)
    return np.rint(np.clip(ramp, 0.0, 1.0) * 255).astype(np.uint8)


def remove_background(
    pixels: np.ndarray, remover: BackgroundRemover, cleanup: MaskCleanup = MaskCleanup()
) -> np.ndarray:
    """``pixels`` (uint8 HxWx3; an existing alpha is replaced) as RGBA with the subject
    opaque and the background transparent."""
    rgb = np.ascontiguousarray(pixels[..., :3])
    alpha = clean_alpha(remover.mask(rgb), cleanup)
    rgb = np.where(alpha[..., None] == 0, 0, rgb).astype(np.uint8)
    return np.dstack([rgb, alpha])
