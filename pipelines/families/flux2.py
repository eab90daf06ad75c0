"""FLUX.2 [klein] (4B, 9B): a flow-matching transformer over 2x2-patchified 32-channel
latents (sides on a 16-px grid) reading Qwen3's hidden layers 9, 18 and 27.

The step-distilled checkpoints take no guidance (4 steps, no CFG): the family's default;
a base checkpoint runs real classifier-free guidance with a negative prompt (its entry:
``guidance_kind = "cfg"``).

Edits run on the base model itself: an instruction edit is ``Flux2KleinPipeline`` with the
input as its one reference image (``image``); replace, recreate and erase are
``Flux2KleinInpaintPipeline``. diffusers 0.42.1 has no FLUX.2 img2img pipeline, so a
recreate without a mask and a variation run the inpaint pipeline under a mask covering
the whole image (``img2img_by_mask``), as does a generation's reference image in img2img mode.
A generation's pins are more reference images of ``Flux2KleinPipeline`` (``references``).
"""

from __future__ import annotations

from typing import Any

from pipelines.families.family import (
    Family,
    GuidanceKind,
    InstructInput,
    LatentRgb,
    LoraTargets,
)
from pipelines.families.flow import FLOW_SCHEDULERS, Qwen3Prompts, flow_strength_steps
from pipelines.task import Task
from weights.catalog import ModelFamily
from weights.transformer_file import TransformerFileLayout


def _spatial_latents(pipe: Any, latents: Any, height: int, width: int) -> Any:
    """A call's latent tokens (raster order of the 2x2-patchified, batch-normalised
    latents, diffusers' ``_pack_latents``) as (B, 32, H/8, W/8) latents, still
    normalised: what ``LATENT_RGB`` reads. diffusers' ``_unpatchify_latents`` undoes the
    patches; the batch norm is left on, as the coefficients were fitted so."""
    # One token per 2x2 patch of the 8x-down VAE latents.
    rows = int(height) // (pipe.vae_scale_factor * 2)
    cols = int(width) // (pipe.vae_scale_factor * 2)
    batch, _, channels = latents.shape
    patches = latents.reshape(batch, rows, cols, channels).permute(0, 3, 1, 2)
    return pipe._unpatchify_latents(patches)


# FLUX.2's latent -> RGB projection for step previews (no tiny autoencoder in diffusers
# reads its 32-channel latents). Coefficients: ComfyUI's ``comfy/latent_formats.py``
# ``Flux2.latent_rgb_factors`` and ``latent_rgb_factors_bias`` (a least-squares fit of
# the normalised, unpatchified latents to the decoded images' colours), rows per channel.
LATENT_RGB = LatentRgb(
    factors=(
        (0.0058, 0.0113, 0.0073),
        (0.0495, 0.0443, 0.0836),
        (-0.0099, 0.0096, 0.0644),
        (0.2144, 0.3009, 0.3652),
        (0.0166, -0.0039, -0.0054),
        (0.0157, 0.0103, -0.0160),
        (-0.0398, 0.0902, -0.0235),
        (-0.0052, 0.0095, 0.0109),
        (-0.3527, -0.2712, -0.1666),
        (-0.0301, -0.0356, -0.0180),
        (-0.0107, 0.0078, 0.0013),
        (0.0746, 0.0090, -0.0941),
        (0.0156, 0.0169, 0.0070),
        (-0.0034, -0.0040, -0.0114),
        (0.0032, 0.0181, 0.0080),
        (-0.0939, -0.0008, 0.0186),
        (0.0018, 0.0043, 0.0104),
        (0.0284, 0.0056, -0.0127),
        (-0.0024, -0.0022, -0.0030),
        (0.1207, -0.0026, 0.0065),
        (0.0128, 0.0101, 0.0142),
        (0.0137, -0.0072, -0.0007),
        (0.0095, 0.0092, -0.0059),
        (0.0000, -0.0077, -0.0049),
        (-0.0465, -0.0204, -0.0312),
        (0.0095, 0.0012, -0.0066),
        (0.0290, -0.0034, 0.0025),
        (0.0220, 0.0169, -0.0048),
        (-0.0332, -0.0457, -0.0468),
        (-0.0085, 0.0389, 0.0609),
        (-0.0076, 0.0003, -0.0043),
        (-0.0111, -0.0460, -0.0614),
    ),
    bias=(-0.0329, -0.0718, -0.0851),
)

FAMILY = Family(
    name=ModelFamily.FLUX2,
    pipelines={
        Task.TEXT_TO_IMAGE: "Flux2KleinPipeline",
        Task.IMAGE_TO_IMAGE: "Flux2KleinInpaintPipeline",
        Task.INPAINT: "Flux2KleinInpaintPipeline",
        Task.INSTRUCT: "Flux2KleinPipeline",
        Task.REFERENCES: "Flux2KleinPipeline",
    },
    prompt_encoder=Qwen3Prompts,
    schedulers=FLOW_SCHEDULERS,
    denoiser="transformer",
    # Flux2Transformer2DModel declares these as its _repeated_blocks too.
    compile_blocks=("Flux2TransformerBlock", "Flux2SingleTransformerBlock"),
    lora=LoraTargets(components=("transformer",)),
    single_file=TransformerFileLayout("Flux2Transformer2DModel", "flux2"),
    strength_steps=flow_strength_steps,
    tiny_builder="flux2_klein",
    guidance_kind=GuidanceKind.NONE,
    max_sequence_length=512,
    emphasis=False,
    # Every [klein] call takes its size (the image input would set it otherwise).
    sized_image_calls=True,
    instruct_input=InstructInput.REFERENCE_IMAGES,
    img2img_by_mask=True,
    preview_latents=_spatial_latents,
    latent_rgb=LATENT_RGB,
)
