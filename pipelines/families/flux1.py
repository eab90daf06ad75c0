"""FLUX.1 ([dev], [schnell]): a 12B flow-matching transformer (double- then single-stream
blocks over 2x2-packed latents, sides on a 16-px grid), CLIP ViT-L pooled and T5-XXL text.

[dev] embeds ``guidance`` in the transformer (a conditioning value, default 3.5; one
forward a step, no CFG); [schnell] takes none (its entry: ``guidance_kind = "none"``,
``max_sequence_length = 256``, 4 steps). Reference images, recreate without a mask and
variations run ``FluxImg2ImgPipeline``.

Edits: instruction edits need a Kontext checkpoint (``kind = "instruct"``,
``FluxKontextPipeline``: the input image's tokens beside the latents); replace, recreate
and erase run on a Fill checkpoint (``kind = "inpaint"``, ``FluxFillPipeline``: its
transformer reads 384 channels, the packed latents, masked-image latents and mask) where
the base entry names one as its ``inpaint_model``, else on the base model itself
(``FluxInpaintPipeline``: the unmasked latents blended back each step). Both take
guidance embedded, as [dev] does (Kontext's default 2.5-3.5, Fill's 30: the entries').

Structure guidance (agentic composition) runs ``FluxControlNetPipeline`` derived from the
base model with a ``FluxControlNetModel`` component of the family (the control image
VAE-encoded and packed as the latents are; ``control_image``).
"""

from __future__ import annotations

from typing import Any

from pipelines.families.family import Family, GuidanceKind, InstructInput, LoraTargets
from pipelines.families.flow import FLOW_SCHEDULERS, T5Prompts, flow_strength_steps
from pipelines.task import Task
from weights.catalog import ModelFamily, ModelKind
from weights.transformer_file import TransformerFileLayout


def _spatial_latents(pipe: Any, latents: Any, height: int, width: int) -> Any:
    """A call's 2x2-packed latent tokens as (B, 16, H/8, W/8) latents (diffusers'
    ``_unpack_latents``, which every FLUX.1 pipeline has), for step previews: TAEF1 reads
    them; no linear projection is defined (a FLUX.1 model without TAEF1 has none)."""
    return pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)


FAMILY = Family(
    name=ModelFamily.FLUX1,
    pipelines={
        Task.TEXT_TO_IMAGE: "FluxPipeline",
        Task.IMAGE_TO_IMAGE: "FluxImg2ImgPipeline",
        Task.INPAINT: "FluxInpaintPipeline",
        Task.CONTROLNET: "FluxControlNetPipeline",
    },
    checkpoints={
        ModelKind.INSTRUCT: "FluxKontextPipeline",
        ModelKind.INPAINT: "FluxFillPipeline",
    },
    instruct_input=InstructInput.CONTEXT_IMAGE,
    prompt_encoder=T5Prompts,
    schedulers=FLOW_SCHEDULERS,
    denoiser="transformer",
    # FluxTransformer2DModel declares these as its _repeated_blocks too.
    compile_blocks=("FluxTransformerBlock", "FluxSingleTransformerBlock"),
    # Kiln's trainer adapts the transformer only; files from kohya's sd-scripts may also
    # adapt the CLIP-L text encoder (``lora_te1_``), which diffusers' FLUX loader takes.
    lora=LoraTargets(components=("transformer", "text_encoder")),
    single_file=TransformerFileLayout("FluxTransformer2DModel", "flux1", kiln_converter=True),
    strength_steps=flow_strength_steps,
    tiny_builder="flux1",
    guidance_kind=GuidanceKind.EMBEDDED,
    max_sequence_length=512,
    emphasis=False,
    sized_image_calls=True,
    preview_latents=_spatial_latents,
    controlnet_model="FluxControlNetModel",
    control_image_arg="control_image",
)
