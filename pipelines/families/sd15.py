"""Stable Diffusion 1.5: one CLIP ViT-L text encoder, a UNet, the 8-px grid of its VAE."""

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
    name=ModelFamily.SD15,
    pipelines={
        Task.TEXT_TO_IMAGE: "StableDiffusionPipeline",
        Task.IMAGE_TO_IMAGE: "StableDiffusionImg2ImgPipeline",
        Task.INPAINT: "StableDiffusionInpaintPipeline",
        Task.CONTROLNET: "StableDiffusionControlNetPipeline",
    },
    **UNET_UNDER_CLIP,
    # An instruct checkpoint (8-channel UNet); a base model does not derive it.
    checkpoints={ModelKind.INSTRUCT: "StableDiffusionInstructPix2PixPipeline"},
    lora=LoraTargets(components=("unet", "text_encoder")),
    single_file=SingleFileLayout(
        prefixes={
            "unet": UNET_PREFIXES,
            "vae": VAE_PREFIXES,
            "text_encoder": ("cond_stage_model.transformer.",),
        },
        text_encoders={"text_encoder": "CLIPTextModel"},
        tokenizer_pads={"tokenizer": CLIP_PAD},
    ),
    tiny_builder="sd15",
    stock_pipeline_options={
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    },
)
