"""Step previews: a call's latents at a denoising step, seen as small RGB images.

    decoder = PreviewDecoder.for_model(engine)           # once per loaded model
    pixels = decoder.pixels(pipe, latents, height, width) # (B, h, w, 3) uint8, one per image
    webp = encode_preview(pixels[0])                      # a few KB

Which decoder a model gets (DESIGN.md §3, issue 22):

1. A tiny autoencoder (diffusers' ``AutoencoderTiny``: TAESD for SD 1.5, TAESDXL, TAEF1
   for FLUX.1) installed as a catalog component of kind ``preview_decoder`` for the
   model's family, where its ``latent_channels`` are the model's VAE's. It decodes as a
   drop-in for the pipeline's VAE would: ``decode(latents / scaling_factor +
   shift_factor)`` with its own config's factors (TAESD's are 1 and 0: it reads the
   UNet's scaled latents; TAEF1's are FLUX.1's VAE's). The default catalog ships tiny
   random ones (``weights/tiny_autoencoders.py``).
2. Otherwise the family's linear latent -> RGB projection (``Family.latent_rgb``: FLUX.2,
   whose latents no tiny autoencoder in diffusers reads).
3. Otherwise none: the call runs without previews, and says so once in the log.

Latents that a family packs into tokens (FLUX) are unpacked by the family first
(``Family.preview_latents``: diffusers' own ``_unpack_latents`` for FLUX.1).

A preview is at most ``PREVIEW_MAX_SIDE`` px on its long side (resized from the decoded
size; a tiny autoencoder decodes latents averaged down to twice that side first, so its
cost does not grow with the image), encoded as a lossy WebP: a progress picture, not an
image to keep.
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from weights.catalog import ComponentKind

if TYPE_CHECKING:
    from pipelines.families.family import Family, LatentRgb
    from pipelines.loaded_model import LoadedModel

logger = logging.getLogger(__name__)

# Long side of a preview in pixels, and its WebP quality: a few KB an image, enough to
# judge composition and colour while the call runs.
PREVIEW_MAX_SIDE = 256
WEBP_QUALITY = 70
# The most steps between two previews a request may ask (``preview_every``; 0: none).
MAX_PREVIEW_EVERY = 1000


def check_preview_every(value: int, field: str = "preview_every") -> None:
    """Refuse a ``preview_every`` outside 0 (off) - ``MAX_PREVIEW_EVERY``, naming ``field``."""
    from pipelines.param_error import ParamError

    if isinstance(value, bool) or not 0 <= value <= MAX_PREVIEW_EVERY:
        raise ParamError(
            field, f"{field} must be 0 (off) to {MAX_PREVIEW_EVERY} steps, got {value!r}"
        )


def spread_every(steps: int, count: int) -> int:
    """The ``preview_every`` that spreads ``count`` previews over ``steps`` before the last
    step (0 for none): every ``steps // (count + 1)`` steps, of which a caller takes the
    first ``count`` (OpenAI's ``partial_images``). A call too short for all of them gives
    fewer."""
    if count <= 0:
        return 0
    return max(1, steps // (count + 1))


def previews_at(step: int, every: int) -> bool:
    """Whether a request with ``preview_every`` ``every`` previews after step ``step``
    (0-based, as diffusers counts): after every ``every``-th step, never when off."""
    return every > 0 and (step + 1) % every == 0


class PreviewDecoder:
    """How one loaded model's latents become preview pixels: its family's unpacking, then
    a tiny autoencoder or the family's linear projection."""

    def __init__(self, family: Family, autoencoder: Any | None, latent_rgb: LatentRgb | None):
        if autoencoder is None and latent_rgb is None:
            raise ValueError(f"family {family.name} has no preview decoder to use")
        self.family = family
        self.autoencoder = autoencoder
        self.latent_rgb = latent_rgb

    @property
    def kind(self) -> str:
        """``autoencoder_tiny`` or ``linear``: what decodes (logs, benchmarks)."""
        return "autoencoder_tiny" if self.autoencoder is not None else "linear"

    @classmethod
    def for_model(cls, model: LoadedModel) -> PreviewDecoder | None:
        """The decoder of ``model``: its family's first installed ``preview_decoder``
        component whose latents fit, else the family's projection, else None."""
        from weights.loading import load_tiny_autoencoder

        channels = int(model.pipe.vae.config.latent_channels)
        for component in model.components_of(ComponentKind.PREVIEW_DECODER):
            autoencoder = load_tiny_autoencoder(component, model.device, model.pipe.vae.dtype)
            fitted = int(autoencoder.config.latent_channels)
            if fitted == channels:
                logger.info("previews of %s decoded by %s", model.spec.id, component.id)
                return cls(model.family, autoencoder, None)
            logger.warning(
                "preview decoder %s reads %d latent channels, %s has %d: not used",
                component.id, fitted, model.spec.id, channels,
            )  # fmt: skip
        if model.family.latent_rgb is not None:
            logger.info("previews of %s by its family's linear projection", model.spec.id)
            return cls(model.family, None, model.family.latent_rgb)
        logger.warning(
            "%s has no preview decoder: install a tiny autoencoder (kind preview_decoder) "
            "for family %s to see step previews",
            model.spec.id, model.family.name,
        )  # fmt: skip
        return None

    def pixels(self, pipe: Any, latents: Any, height: int, width: int) -> np.ndarray:
        """(B, h, w, 3) uint8 previews of a call's ``latents`` at a step (the tensor the
        pipeline hands its step callback) for a call of ``height`` x ``width`` px."""
        import torch

        spatial = latents
        if self.family.preview_latents is not None:
            spatial = self.family.preview_latents(pipe, latents, height, width)
        decode = self._decode if self.autoencoder is not None else self._project
        with torch.inference_mode():
            rgb = decode(spatial)
        rgb = (rgb.float() / 2 + 0.5).clamp(0, 1)
        rgb = _fit_side(rgb, PREVIEW_MAX_SIDE)
        pixels = (rgb * 255).round().to(torch.uint8)
        return pixels.permute(0, 2, 3, 1).contiguous().cpu().numpy()

    def _decode(self, latents: Any) -> Any:
        import torch.nn.functional as F

        # Decoding a 1024² call's latents whole to shrink them to 256 px after is 16x the
        # work a preview needs: average them down first, to the least size that still
        # decodes to twice the preview's side (the area resize after anti-aliases).
        factor = 1
        while max(latents.shape[-2:]) // (factor * 2) * 8 >= 2 * PREVIEW_MAX_SIDE:
            factor *= 2
        if factor > 1:
            latents = F.avg_pool2d(latents.float(), factor)
        config = self.autoencoder.config
        scaled = latents.to(self.autoencoder.dtype) / config.scaling_factor + config.shift_factor
        return self.autoencoder.decode(scaled, return_dict=False)[0]

    def _project(self, latents: Any) -> Any:
        import torch

        rgb = self.latent_rgb
        factors = torch.tensor(rgb.factors, device=latents.device, dtype=torch.float32)
        bias = torch.tensor(rgb.bias, device=latents.device, dtype=torch.float32)
        if factors.shape[0] != latents.shape[1]:
            raise ValueError(
                f"family {self.family.name}'s projection reads {factors.shape[0]} channels, "
                f"its latents have {latents.shape[1]}"
            )
        projected = torch.einsum("bchw,cr->brhw", latents.float(), factors)
        return projected + bias.view(1, 3, 1, 1)


def _fit_side(images: Any, side: int) -> Any:
    """``images`` (B, 3, H, W) resized so the long side is at most ``side`` (area
    averaging: a smaller picture of the same thing, not a crop)."""
    import torch.nn.functional as F

    height, width = images.shape[-2:]
    longest = max(height, width)
    if longest <= side:
        return images
    size = (max(1, round(height * side / longest)), max(1, round(width * side / longest)))
    return F.interpolate(images, size=size, mode="area")


def encode_preview(pixels: np.ndarray) -> bytes:
    """One preview (h, w, 3) uint8 as a lossy WebP."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, format="WEBP", quality=WEBP_QUALITY, method=0)
    return out.getvalue()
