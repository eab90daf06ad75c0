"""What SD 1.5 and SDXL share: UNet denoisers with CLIP text encoders, trained on the
same discrete noise schedule, shipped as LDM-layout single files (A1111, civitai)."""

from __future__ import annotations

from typing import Any

from pipelines.schedulers import SCHEDULERS

# The discrete-time schedulers (epsilon prediction) every SD checkpoint works with.
DISCRETE_SCHEDULERS = SCHEDULERS
# Regional compilation of a UNet2DConditionModel: its repeated blocks (diffusers 0.42
# declares no ``_repeated_blocks`` on the UNet).
UNET_BLOCKS = ("BasicTransformerBlock", "ResnetBlock2D")

UNET_PREFIXES = ("model.diffusion_model.",)
VAE_PREFIXES = ("first_stage_model.", "vae.")
CLIP_PAD = "<|endoftext|>"


def clip_prompts(pipe: Any, sequence_length: int | None = None) -> Any:
    """The CLIP families' prompt encoding: A1111-style emphasis and 75-token windows
    (``pipelines.prompt_weighting``, imported here so torch loads with a model, not with
    this package). CLIP's windows take any length: there is no sequence length."""
    from pipelines.prompt_weighting import PromptEncoder

    return PromptEncoder(pipe)


def floor_strength_steps(steps: int, strength: float) -> int:
    """The denoising steps SD's and SDXL's img2img and inpaint pipelines run of ``steps``
    at ``strength`` (diffusers' ``get_timesteps``): ``steps × strength`` rounded down, so
    1 step at strength 0.6 runs none (the call then fails on an empty batch)."""
    return min(int(steps * strength), steps)


# The fields SD 1.5 and SDXL fill alike: a UNet under CLIP prompts, discrete schedulers.
UNET_UNDER_CLIP: dict[str, Any] = {
    "prompt_encoder": clip_prompts,
    "schedulers": DISCRETE_SCHEDULERS,
    "denoiser": "unet",
    "compile_blocks": UNET_BLOCKS,
    "strength_steps": floor_strength_steps,
}
