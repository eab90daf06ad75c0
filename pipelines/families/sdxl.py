"""SDXL: two CLIP text encoders (the second pooled), a UNet conditioned on size and crop,
sides on a 64-px grid; its VAE overflows in fp16."""

from __future__ import annotations

from pipelines.families.family import Family, LoraTargets
from pipelines.families.stable_diffusion import (
    CLIP_PAD,
    UNET_PREFIXES,
    UNET_UNDER_CLIP,
    VAE_PREFIXES,
)
from pipelines.task import Task
from weights.catalog import ModelFamily, ModelKind
from weights.single_file import SingleFileLayout

FAMILY = Family(
    name=ModelFamily.SDXL,
    pipelines={
        Task.TEXT_TO_IMAGE: "StableDiffusionXLPipeline",
        Task.IMAGE_TO_IMAGE: "StableDiffusionXLImg2ImgPipeline",
        Task.INPAINT: "StableDiffusionXLInpaintPipeline",
        Task.CONTROLNET: "StableDiffusionXLControlNetPipeline",
    },
    **UNET_UNDER_CLIP,
    # An instruct checkpoint (8-channel UNet); a base model does not derive it.
    checkpoints={ModelKind.INSTRUCT: "StableDiffusionXLInstructPix2PixPipeline"},
    # The UNet config maps kohya's SGM block numbers (SDXL's load_lora_weights passes it).
    lora=LoraTargets(
        components=("unet", "text_encoder", "text_encoder_2"), reads_denoiser_config=True
    ),
    single_file=SingleFileLayout(
        prefixes={
            "unet": UNET_PREFIXES,
            "vae": VAE_PREFIXES,
            "text_encoder": ("conditioner.embedders.0.transformer.",),
            "text_encoder_2": ("conditioner.embedders.1.model.",),
        },
        text_encoders={
            "text_encoder": "CLIPTextModel",
            "text_encoder_2": "CLIPTextModelWithProjection",
        },
        # The second tokenizer pads with "!" (id 0), as the original checkpoint's.
        tokenizer_pads={"tokenizer": CLIP_PAD, "tokenizer_2": "!"},
    ),
    tiny_builder="sdxl",
    vae_overflows_in_fp16=True,
    size_conditioning=True,
    stock_pipeline_options={"force_zeros_for_empty_prompt": True, "add_watermarker": False},
)
