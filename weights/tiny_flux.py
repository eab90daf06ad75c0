"""Tiny FLUX.1 and FLUX.2 [klein]: the real flow-matching transformer pipelines at toy width.

Like the tiny SD models (``weights.tiny``): diffusers' and transformers' own classes,
random weights fixed by seed, saved as safetensors in diffusers layout with a sha256
``MANIFEST``, loaded offline by the real pipeline class; byte-identical on every build.
The images are noise; every code path is real and fast on a CPU.

API (each function takes the folder to write and returns it; the pipeline factories
return the unsaved pipeline, for ``weights.tiny.TINY_BUILDERS``):

- ``build_tiny_flux1(path)`` / ``tiny_flux1_pipeline()``: FLUX.1 [dev]-like, a
  guidance-distilled transformer (``guidance`` embedded, no CFG), dynamic shifting;
  ``FluxPipeline.from_pretrained(path)`` loads it.
- ``build_tiny_flux1_schnell(path)`` / ``tiny_flux1_schnell_pipeline()``: FLUX.1
  [schnell]-like, no guidance embedding, a fixed shift of 1 (4 steps).
- ``tiny_flux1_kontext_pipeline()``: FLUX.1 Kontext [dev]-like, the [dev] transformer's
  shape with weights of its own, for ``FluxKontextPipeline`` (instruction edits).
- ``tiny_flux1_fill_pipeline()``: FLUX.1 Fill [dev]-like, for ``FluxFillPipeline``: its
  transformer reads 384 channels (packed latents 64, packed masked-image latents 64,
  the packed 8x8 mask 256; the same 384 as the real one, whose latents are 16-channel
  too) and writes 64.
- ``build_tiny_flux2_klein(path)`` / ``tiny_flux2_klein_pipeline()``: FLUX.2 [klein]
  4B-like, step-distilled (``is_distilled``: guidance ignored, no CFG);
  ``Flux2KleinPipeline.from_pretrained(path)`` loads it.
- ``build_tiny_flux2_klein_base(path)`` / ``tiny_flux2_klein_base_pipeline()``: the
  [klein] base checkpoint's shape (``is_distilled=False``: real CFG).

What is kept from the real checkpoints and what is shrunk:

- Kept: the VAEs' four blocks (8x down-sampling, so a 64 px side is an 8-latent side and
  FLUX's 2x2 packing asks sides that are multiples of 16), FLUX.1's 16 latent channels
  with its scaling and shift factors, FLUX.2's 32 latent channels with its 2x2 patchified
  batch norm, the transformers' double- and single-stream blocks and rotary axes, the
  text encoders' kinds and tokenizers, the schedulers' configs, Qwen3's 36 layers (so
  [klein]'s default hidden layers 9, 18 and 27 are intermediate ones, as on the 4B).
- Shrunk: every width (16-64), one block of each transformer kind, two T5 layers, the
  tokenizers' vocabularies (``weights.tiny_text_encoders``).

Registering one as a tiny base model: ``weights.tiny`` must not import this module (it
imports ``weights.tiny``, and the import contracts forbid cycles among siblings), so the
entry names it as ``"weights.tiny_flux:tiny_flux1_pipeline"``, the way
``COMPONENT_BUILDERS`` names the tiny components.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from weights.tiny import SEED, _clip_text_config, _seeded, write_manifest
from weights.tiny_text_encoders import (
    QWEN_HIDDEN,
    qwen3_encoder,
    qwen_tokenizer,
    t5_encoder,
    t5_tokenizer,
)
from weights.tokenizer import EOS, clip_tokenizer

# Seeds of their own, clear of the SD builders' (SEED + 0..39).
FLUX1_SEED = SEED + 40
FLUX2_SEED = SEED + 50
# The Kontext and Fill transformers' own draws (their other modules are [dev]'s).
KONTEXT_SEED = SEED + 60
FILL_SEED = SEED + 61

# The rotary axes split a head: FLUX.1 (time, row, column) 16+56+56 of 128 there, 4+6+6 of
# 16 here; FLUX.2 four equal axes, 4x32 there, 4x4 here.
HEAD_DIM = 16
# The tiny T5's width (``weights.tiny_text_encoders.t5_encoder``'s d_model).
TINY_T5_WIDTH = 32
FLUX1_ROPE_AXES = (4, 6, 6)
FLUX2_ROPE_AXES = (4, 4, 4, 4)
FLUX1_LATENT_CHANNELS = 16
FLUX2_LATENT_CHANNELS = 32
# FLUX.1 Fill's transformer input: packed latents + packed masked-image latents (16
# channels x 2x2 each) + the mask, 8x8 pixels per latent x 2x2 patches: 384.
FILL_IN_CHANNELS = FLUX1_LATENT_CHANNELS * 4 * 2 + 8 * 8 * 4
# [klein] stacks three Qwen3 hidden states along the feature axis.
KLEIN_TEXT_LAYERS = (9, 18, 27)

# FLUX.1 [dev]'s and FLUX.2's scheduler: resolution-dependent shift (mu from the image's
# token count); FLUX.1 [schnell]'s: none.
_DYNAMIC_SHIFT = {
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
}
_NO_SHIFT = {"shift": 1.0, "use_dynamic_shifting": False}

# The VAE blocks of the tiny SD VAE: four, so the latent is 1/8 of the image.
_VAE_BLOCKS = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (8, 16, 16, 16),
    "layers_per_block": 1,
    "norm_num_groups": 4,
    "sample_size": 128,
}


def _flux1_vae() -> Any:
    from diffusers import AutoencoderKL

    # FLUX.1's VAE: 16 channels, no quant convs, latents shifted then scaled.
    return AutoencoderKL(
        **_VAE_BLOCKS,
        latent_channels=FLUX1_LATENT_CHANNELS,
        use_quant_conv=False,
        use_post_quant_conv=False,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        force_upcast=False,
    )


def _flux1_pipeline(
    guidance_embeds: bool,
    scheduler_config: dict[str, Any],
    pipeline_class: str = "FluxPipeline",
    transformer_seed: int = FLUX1_SEED,
    in_channels: int = FLUX1_LATENT_CHANNELS * 4,  # 2x2 packed latent patches
    out_channels: int | None = None,
) -> Any:
    """A tiny FLUX.1 as ``pipeline_class``: [dev]'s (or [schnell]'s) modules, the
    transformer drawn with ``transformer_seed`` reading ``in_channels`` (Fill: 384) and
    writing ``out_channels`` (None: as many as it reads; Fill: the packed latents)."""
    import diffusers
    from diffusers import FlowMatchEulerDiscreteScheduler
    from transformers import CLIPTextModel

    clip_config = _clip_text_config("quick_gelu")  # CLIP ViT-L's text tower, as SD 1.5's
    tokenizer_2 = t5_tokenizer()
    text_encoder_2 = _seeded(FLUX1_SEED + 1, lambda: t5_encoder(len(tokenizer_2)))
    transformer = _flux1_transformer(
        guidance_embeds,
        transformer_seed,
        in_channels,
        out_channels,
        text_width=text_encoder_2.config.d_model,
        pooled_width=clip_config.hidden_size,  # CLIP's pooled output
    )
    return getattr(diffusers, pipeline_class)(
        scheduler=FlowMatchEulerDiscreteScheduler(**scheduler_config),
        vae=_seeded(FLUX1_SEED + 2, _flux1_vae),
        text_encoder=_seeded(FLUX1_SEED + 3, lambda: CLIPTextModel(clip_config)),
        tokenizer=clip_tokenizer(EOS),
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )


def _flux1_transformer(
    guidance_embeds: bool,
    transformer_seed: int,
    in_channels: int,
    out_channels: int | None,
    text_width: int,
    pooled_width: int,
) -> Any:
    """A tiny FLUX.1 transformer drawn with ``transformer_seed``, reading text embeddings
    ``text_width`` wide (T5's) and a pooled embedding ``pooled_width`` wide (CLIP's)."""
    from diffusers import FluxTransformer2DModel

    return _seeded(
        transformer_seed,
        lambda: FluxTransformer2DModel(
            patch_size=1,
            in_channels=in_channels,
            out_channels=out_channels,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=HEAD_DIM,
            num_attention_heads=2,
            joint_attention_dim=text_width,
            pooled_projection_dim=pooled_width,
            guidance_embeds=guidance_embeds,
            axes_dims_rope=FLUX1_ROPE_AXES,
        ),
    )


def tiny_flux1_transformer() -> Any:
    """The tiny FLUX.1 [dev]'s transformer alone, as ``tiny_flux1_pipeline`` draws it
    (without building the text encoders: the tiny FLUX ControlNet is made from it)."""
    return _flux1_transformer(
        guidance_embeds=True,
        transformer_seed=FLUX1_SEED,
        in_channels=FLUX1_LATENT_CHANNELS * 4,
        out_channels=None,
        text_width=TINY_T5_WIDTH,
        pooled_width=_clip_text_config("quick_gelu").hidden_size,
    )


def tiny_flux1_pipeline() -> Any:
    """The tiny FLUX.1 [dev]: guidance embedded in the transformer, dynamic shifting."""
    return _flux1_pipeline(guidance_embeds=True, scheduler_config=_DYNAMIC_SHIFT)


def tiny_flux1_schnell_pipeline() -> Any:
    """The tiny FLUX.1 [schnell]: no guidance embedding, no shift. Its transformer draws
    the same seed as [dev]'s, less the guidance embedder."""
    return _flux1_pipeline(guidance_embeds=False, scheduler_config=_NO_SHIFT)


def tiny_flux1_kontext_pipeline() -> Any:
    """The tiny FLUX.1 Kontext [dev]: [dev]'s shape (guidance embedded), its own weights."""
    return _flux1_pipeline(
        guidance_embeds=True,
        scheduler_config=_DYNAMIC_SHIFT,
        pipeline_class="FluxKontextPipeline",
        transformer_seed=KONTEXT_SEED,
    )


def tiny_flux1_fill_pipeline() -> Any:
    """The tiny FLUX.1 Fill [dev]: a 384-channel transformer (guidance embedded)."""
    return _flux1_pipeline(
        guidance_embeds=True,
        scheduler_config=_DYNAMIC_SHIFT,
        pipeline_class="FluxFillPipeline",
        transformer_seed=FILL_SEED,
        in_channels=FILL_IN_CHANNELS,
        out_channels=FLUX1_LATENT_CHANNELS * 4,
    )


def _flux2_vae() -> Any:
    from diffusers import AutoencoderKLFlux2

    # FLUX.2's VAE: 32 channels, quant convs, and a batch norm over 2x2-patchified latents
    # (its running statistics are the pipeline's latent normalisation).
    return AutoencoderKLFlux2(**_VAE_BLOCKS, latent_channels=FLUX2_LATENT_CHANNELS)


def _flux2_klein_pipeline(is_distilled: bool) -> Any:
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )

    tokenizer = qwen_tokenizer()
    transformer = _seeded(
        FLUX2_SEED,
        lambda: Flux2Transformer2DModel(
            patch_size=1,
            in_channels=FLUX2_LATENT_CHANNELS * 4,  # 2x2 patchified latents
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=HEAD_DIM,
            num_attention_heads=2,
            joint_attention_dim=len(KLEIN_TEXT_LAYERS) * QWEN_HIDDEN,
            axes_dims_rope=FLUX2_ROPE_AXES,
            guidance_embeds=False,  # [klein] embeds no guidance, distilled or not
        ),
    )
    return Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**_DYNAMIC_SHIFT),
        vae=_seeded(FLUX2_SEED + 1, _flux2_vae),
        text_encoder=_seeded(FLUX2_SEED + 2, lambda: qwen3_encoder(len(tokenizer))),
        tokenizer=tokenizer,
        transformer=transformer,
        is_distilled=is_distilled,
    )


def tiny_flux2_klein_pipeline() -> Any:
    """The tiny FLUX.2 [klein] (step-distilled: guidance ignored, 4 steps)."""
    return _flux2_klein_pipeline(is_distilled=True)


def tiny_flux2_klein_base_pipeline() -> Any:
    """The tiny FLUX.2 [klein] base (not distilled: classifier-free guidance)."""
    return _flux2_klein_pipeline(is_distilled=False)


def _save(make: Callable[[], Any], path: Path) -> Path:
    """Write the pipeline ``make`` builds to folder ``path`` with its ``MANIFEST``.

    Not atomic: ``weights.tiny.build_tiny`` stages and renames once the builder is
    registered; tests and one-off builds write a fresh folder.
    """
    from weights.loading import quiet_progress_bars

    quiet_progress_bars()
    path = Path(path)
    make().save_pretrained(path, safe_serialization=True)
    write_manifest(path)
    return path


def build_tiny_flux1(path: Path) -> Path:
    """Write the tiny FLUX.1 [dev] to ``path`` (a diffusers folder for ``FluxPipeline``)."""
    return _save(tiny_flux1_pipeline, path)


def build_tiny_flux1_schnell(path: Path) -> Path:
    """Write the tiny FLUX.1 [schnell] to ``path`` (a diffusers folder for ``FluxPipeline``)."""
    return _save(tiny_flux1_schnell_pipeline, path)


def build_tiny_flux2_klein(path: Path) -> Path:
    """Write the tiny FLUX.2 [klein] to ``path`` (for ``Flux2KleinPipeline``)."""
    return _save(tiny_flux2_klein_pipeline, path)


def build_tiny_flux2_klein_base(path: Path) -> Path:
    """Write the tiny FLUX.2 [klein] base to ``path`` (for ``Flux2KleinPipeline``)."""
    return _save(tiny_flux2_klein_base_pipeline, path)
