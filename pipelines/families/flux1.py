"""FLUX.1 ([dev], [schnell]): a 12B flow-matching transformer (double- then single-stream
blocks over 2x2-packed latents, sides on a 16-px grid), CLIP ViT-L pooled and T5-XXL text.

[dev] embeds ``guidance`` in the transformer (a conditioning value, default 3.5; one
forward a step, no CFG); [schnell] takes none (its entry: ``guidance_kind = "none"``,
``max_sequence_length = 256``, 4 steps). Reference images run ``FluxImg2ImgPipeline``;
inpainting, Fill and Kontext are the edits of the next issue.
"""

from __future__ import annotations

from pipelines.families.family import Family, GuidanceKind, LoraTargets
from pipelines.families.flow import FLOW_SCHEDULERS, T5Prompts
from pipelines.task import Task
from weights.catalog import ModelFamily
from weights.transformer_file import TransformerFileLayout

FAMILY = Family(
    name=ModelFamily.FLUX1,
    pipelines={
        Task.TEXT_TO_IMAGE: "FluxPipeline",
        Task.IMAGE_TO_IMAGE: "FluxImg2ImgPipeline",
    },
    prompt_encoder=T5Prompts,
    schedulers=FLOW_SCHEDULERS,
    denoiser="transformer",
    # FluxTransformer2DModel declares these as its _repeated_blocks too.
    compile_blocks=("FluxTransformerBlock", "FluxSingleTransformerBlock"),
    # Kiln's styles train and load the transformer only (the Flux loader also takes CLIP).
    lora=LoraTargets(components=("transformer",)),
    single_file=TransformerFileLayout("FluxTransformer2DModel", "flux1", kiln_converter=True),
    tiny_builder="flux1",
    guidance_kind=GuidanceKind.EMBEDDED,
    max_sequence_length=512,
    emphasis=False,
    sized_image_calls=True,
)
