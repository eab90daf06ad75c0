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
"""

from __future__ import annotations

from pipelines.families.family import Family, GuidanceKind, InstructInput, LoraTargets
from pipelines.families.flow import FLOW_SCHEDULERS, Qwen3Prompts
from pipelines.task import Task
from weights.catalog import ModelFamily
from weights.transformer_file import TransformerFileLayout

FAMILY = Family(
    name=ModelFamily.FLUX2,
    pipelines={
        Task.TEXT_TO_IMAGE: "Flux2KleinPipeline",
        Task.IMAGE_TO_IMAGE: "Flux2KleinInpaintPipeline",
        Task.INPAINT: "Flux2KleinInpaintPipeline",
        Task.INSTRUCT: "Flux2KleinPipeline",
    },
    prompt_encoder=Qwen3Prompts,
    schedulers=FLOW_SCHEDULERS,
    denoiser="transformer",
    # Flux2Transformer2DModel declares these as its _repeated_blocks too.
    compile_blocks=("Flux2TransformerBlock", "Flux2SingleTransformerBlock"),
    lora=LoraTargets(components=("transformer",)),
    single_file=TransformerFileLayout("Flux2Transformer2DModel", "flux2"),
    tiny_builder="flux2_klein",
    guidance_kind=GuidanceKind.NONE,
    max_sequence_length=512,
    emphasis=False,
    # Every [klein] call takes its size (the image input would set it otherwise).
    sized_image_calls=True,
    instruct_input=InstructInput.REFERENCE_IMAGES,
    img2img_by_mask=True,
)
