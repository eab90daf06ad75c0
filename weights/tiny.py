"""Tiny deterministic models: the real SD 1.5 and SDXL architectures at toy width.

They are the out-of-the-box default and what every test runs on. Weights are random but
fixed by seed, saved as safetensors in diffusers layout and loaded back through the same
loader as real weights. Building twice gives byte-identical files; ``MANIFEST`` in each
folder lists every file's sha256 so that is checkable.

Tiny images are noise: the point is that every code path is real and fast on a CPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from weights.catalog import ComponentSpec, ModelSpec
from weights.home import private_dir
from weights.loading import quiet_progress_bars
from weights.tokenizer import EOS, MAX_LENGTH, VOCAB_SIZE, clip_tokenizer

logger = logging.getLogger(__name__)

MANIFEST = "kiln-manifest.json"
SEED = 20261126

# Same noise schedule as the real checkpoints of both families.
_SCHEDULE = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}


def _vae(scaling_factor: float) -> Any:
    from diffusers import AutoencoderKL

    # Four blocks as in the real VAE, so the latent is 1/8 of the image as there.
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=128,
        scaling_factor=scaling_factor,
        force_upcast=False,
    )


def _clip_text_config(hidden_act: str) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=MAX_LENGTH,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        hidden_act=hidden_act,
        projection_dim=32,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )


def _seeded(seed: int, make: Callable[[], Any]) -> Any:
    import torch

    torch.manual_seed(seed)
    return make()


def _build_sd15() -> Any:
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    unet = _seeded(
        SEED,
        lambda: UNet2DConditionModel(
            sample_size=32,
            in_channels=4,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(32, 32, 64, 64),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=8,
        ),
    )
    vae = _seeded(SEED + 1, lambda: _vae(0.18215))
    text_encoder = _seeded(SEED + 2, lambda: CLIPTextModel(_clip_text_config("quick_gelu")))
    scheduler = PNDMScheduler(**_SCHEDULE, skip_prk_steps=True, set_alpha_to_one=False)
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(EOS),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _build_sdxl() -> Any:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    time_embed_dim = 8
    pooled_dim = 32  # text_encoder_2 projection_dim
    unet = _seeded(
        SEED + 10,
        lambda: UNet2DConditionModel(
            sample_size=32,
            in_channels=4,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(32, 64, 64),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4, 4),
            transformer_layers_per_block=(1, 1, 2),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=time_embed_dim,
            projection_class_embeddings_input_dim=pooled_dim + 6 * time_embed_dim,
            cross_attention_dim=64,  # text_encoder hidden + text_encoder_2 hidden
            norm_num_groups=8,
        ),
    )
    vae = _seeded(SEED + 11, lambda: _vae(0.13025))
    text_encoder = _seeded(SEED + 12, lambda: CLIPTextModel(_clip_text_config("quick_gelu")))
    text_encoder_2 = _seeded(
        SEED + 13, lambda: CLIPTextModelWithProjection(_clip_text_config("gelu"))
    )
    scheduler = EulerDiscreteScheduler(
        **_SCHEDULE, timestep_spacing="leading", interpolation_type="linear"
    )
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=clip_tokenizer(EOS),
        tokenizer_2=clip_tokenizer("!"),
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
    )


def _sd15_variant(pipeline_class: str, in_channels: int, seed: int) -> Any:
    """The tiny SD 1.5 as ``pipeline_class`` with a UNet taking ``in_channels`` latent
    channels (drawn with ``seed``); every other module is the tiny SD 1.5's own."""
    import diffusers

    sd15 = _build_sd15()
    config = dict(sd15.unet.config)
    config["in_channels"] = in_channels
    unet = _seeded(seed, lambda: diffusers.UNet2DConditionModel.from_config(config))
    return getattr(diffusers, pipeline_class)(
        vae=sd15.vae,
        text_encoder=sd15.text_encoder,
        tokenizer=sd15.tokenizer,
        unet=unet,
        scheduler=sd15.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _build_sd15_instruct() -> Any:
    """A tiny InstructPix2Pix: 8 UNet input channels (noise latents + the encoded input
    image), as the real InstructPix2Pix checkpoints have."""
    return _sd15_variant("StableDiffusionInstructPix2PixPipeline", 8, SEED + 20)


def _build_sd15_inpaint() -> Any:
    """A tiny dedicated inpainting model: 9 UNet input channels (noise latents + mask +
    masked-image latents), as the real inpainting checkpoints have."""
    return _sd15_variant("StableDiffusionInpaintPipeline", 9, SEED + 30)


def _imported(target: str) -> Callable[[], Any]:
    """A builder named ``"module:function"``, imported when it is called: the tiny FLUX
    builders' module imports this one (siblings may not import each other both ways)."""

    def build() -> Any:
        import importlib

        module, function = target.split(":")
        return getattr(importlib.import_module(module), function)()

    build.__qualname__ = target
    return build


# Tiny base model name -> a factory of its unsaved pipeline.
TINY_BUILDERS: dict[str, Callable[[], Any]] = {
    "sd15": _build_sd15,
    "sdxl": _build_sdxl,
    "sd15_instruct": _build_sd15_instruct,
    "sd15_inpaint": _build_sd15_inpaint,
    "flux1": _imported("weights.tiny_flux:tiny_flux1_pipeline"),
    "flux1_schnell": _imported("weights.tiny_flux:tiny_flux1_schnell_pipeline"),
    "flux1_kontext": _imported("weights.tiny_flux:tiny_flux1_kontext_pipeline"),
    "flux1_fill": _imported("weights.tiny_flux:tiny_flux1_fill_pipeline"),
    "flux2_klein": _imported("weights.tiny_flux:tiny_flux2_klein_pipeline"),
    "flux2_klein_base": _imported("weights.tiny_flux:tiny_flux2_klein_base_pipeline"),
}


def build_tiny(family: str, out_dir: Path) -> Path:
    """Build the tiny model of ``family`` into ``out_dir`` (a diffusers folder) atomically.

    The folder appears complete or not at all: it is written next to ``out_dir`` and
    renamed into place, so a crash or a concurrent build never leaves half a model.
    """
    try:
        builder = TINY_BUILDERS[family]
    except KeyError:
        known = list(TINY_BUILDERS)
        raise KeyError(f"no tiny builder for family {family!r}; known: {known}") from None
    out_dir = Path(out_dir)
    private_dir(out_dir.parent)  # often the first folder made under KILN_HOME
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    quiet_progress_bars()
    try:
        pipe = builder()
        pipe.save_pretrained(staging, safe_serialization=True)
        write_manifest(staging)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("built tiny %s model at %s", family, out_dir)
    return out_dir


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def file_hashes(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file in ``folder`` but the manifest."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in _files(folder)
    }


def write_manifest(folder: Path) -> Path:
    """Write ``MANIFEST`` (sorted JSON of file -> sha256) into ``folder``."""
    path = folder / MANIFEST
    path.write_text(json.dumps(file_hashes(folder), indent=1, sort_keys=True) + "\n")
    return path


def verify_manifest(folder: Path) -> list[str]:
    """Files whose hash differs from ``MANIFEST`` (or are missing/extra); empty when intact."""
    path = folder / MANIFEST
    if not path.exists():
        return [MANIFEST]
    expected = json.loads(path.read_text())
    actual = file_hashes(folder)
    return sorted(k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k))


def ensure_tiny_models(specs: Iterable[ModelSpec]) -> list[Path]:
    """Build every tiny model in ``specs`` whose folder is missing or incomplete."""
    built = []
    for spec in specs:
        if spec.tiny is None:
            continue
        if spec.source.is_dir() and (spec.source / MANIFEST).exists():
            continue
        built.append(build_tiny(spec.tiny, spec.source))
    return built


# Tiny builders of catalog components, as "module:function" so that nothing heavy (open_clip,
# onnx, spandrel) is imported until a component is built. A builder takes the path to
# write (a file or a folder, named like the entry's ``source``) and writes it whole.
COMPONENT_BUILDERS: dict[str, str] = {
    "open_clip": "weights.tiny_clip:build_tiny_clip",
    "ip_adapter_sd15": "weights.tiny_ip_adapter:build_tiny_ip_adapter_sd15",
    "ip_adapter_sdxl": "weights.tiny_ip_adapter:build_tiny_ip_adapter_sdxl",
    "controlnet_sd15": "weights.tiny_controlnet:build_tiny_controlnet_sd15",
    "controlnet_flux1": "weights.tiny_controlnet:build_tiny_controlnet_flux1",
    "esrgan": "weights.tiny_upscaler:build_tiny_esrgan",
    "segmenter": "weights.tiny_segmenter:build_tiny_segmenter",
    "taesd": "weights.tiny_autoencoders:build_tiny_taesd",
    "taesdxl": "weights.tiny_autoencoders:build_tiny_taesdxl",
    "taef1": "weights.tiny_autoencoders:build_tiny_taef1",
}


def component_builder(name: str) -> Callable[[Path], Any]:
    """The tiny component builder ``name``; loud on a miss."""
    import importlib

    try:
        target = COMPONENT_BUILDERS[name]
    except KeyError:
        known = ", ".join(COMPONENT_BUILDERS)
        raise KeyError(f"no tiny component builder {name!r}; known: {known}") from None
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


def build_tiny_component(name: str, out: Path) -> Path:
    """Build tiny component ``name`` at ``out`` atomically (written beside it, renamed in)."""
    builder = component_builder(name)
    out = Path(out)
    private_dir(out.parent)
    staging_dir = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    staged = staging_dir / out.name
    quiet_progress_bars()
    try:
        builder(staged)
        if staged.is_dir():
            write_manifest(staged)
            if out.exists():
                shutil.rmtree(out)
        os.replace(staged, out)
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)
    logger.info("built tiny component %s at %s", name, out)
    return out


def _component_present(component: ComponentSpec) -> bool:
    source = component.source
    if source.is_dir():
        return (source / MANIFEST).exists()
    return source.is_file()


def ensure_tiny_components(components: Iterable[ComponentSpec]) -> list[Path]:
    """Build every tiny component whose file or folder is missing or incomplete."""
    return [
        build_tiny_component(c.tiny, c.source)
        for c in components
        if c.tiny is not None and not _component_present(c)
    ]
