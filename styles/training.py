"""Private style training: a LoRA on the denoiser's attention layers, as diffusers trains one.

    result = train_lora(spec, examples, TrainingParams(steps=500, seed=7), out_file,
                        progress=lambda step, total, loss: ...)
    pipe.load_lora_weights(result.path, adapter_name="style")

The recipe is diffusers' ``examples/text_to_image/train_text_to_image_lora.py`` (and its
SDXL sibling), without accelerate: peft's ``LoraConfig`` (rank, alpha = rank, gaussian
init) on ``to_q``, ``to_k``, ``to_v`` and ``to_out.0`` added with ``unet.add_adapter``;
the VAE, the text encoder(s) and the base UNet weights stay frozen; each step noises the
VAE latents of a batch of training images at random timesteps and regresses the UNet's
prediction (epsilon or v) onto the target with MSE; AdamW updates the LoRA parameters
only, gradients clipped to norm 1. The file is saved with the pipeline class's
``save_lora_weights`` in diffusers' key layout, so ``load_lora_weights`` reads it back.

Differences from the script, each for a reason:

- Frozen parts run once: the latent distribution of every image and the embedding of
  every caption are computed before the loop (the VAE and text encoders never change), and
  each step samples latents from the cached distribution as the script does per batch.
- Deterministic given ``seed``: the LoRA init, the batch order, the latent samples, the
  noise and the timesteps all come from seeded generators, never the global RNG another
  thread could advance.
- ``progress(step, total, loss)`` runs after every optimizer step; raising from it
  (a cancelled job) stops training with nothing written.

On a flow-matching transformer (FLUX.1, FLUX.2 [klein]) the same loop runs diffusers'
FLUX LoRA recipe instead (``styles.flow_training``: flow-matching loss and timestep
sampling, LoRA on the attention projections of both block kinds, the model's latent
packing); latents and text embeddings are cached the same way, and the file is saved
with the pipeline's ``save_lora_weights`` as ``transformer`` layers.

Imports ``weights/`` and libraries only (DESIGN.md §2).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from pipelines.families import Family, family_of, load_pipeline
from pipelines.task import Task
from styles.flow_training import FlowLoss, attention_targets, flow_recipe, is_flow_matching
from weights.catalog import ModelSpec
from weights.devices import select_device, select_dtype

logger = logging.getLogger(__name__)

# The attention projections the LoRA adapts (diffusers' recipe).
TARGET_MODULES = ("to_k", "to_q", "to_v", "to_out.0")
MIN_IMAGES = 5
MAX_IMAGES = 50
# Called after each optimizer step with (step, total steps, loss); may raise to stop.
ProgressCallback = Callable[[int, int, float], None]


class TrainingError(ValueError):
    """Training inputs Kiln cannot train on; the message says which and why."""


@dataclass(frozen=True)
class TrainingExample:
    """One training image (RGB) and its caption."""

    image: Image.Image
    caption: str = ""


@dataclass(frozen=True)
class TrainingParams:
    """How to train. ``resolution`` ``None`` is the model's default resolution's long side."""

    steps: int = 500
    rank: int = 8
    learning_rate: float = 1e-4
    batch_size: int = 4
    resolution: int | None = None
    seed: int = 0
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise TrainingError(f"steps must be at least 1, got {self.steps}")
        if self.rank < 1:
            raise TrainingError(f"rank must be at least 1, got {self.rank}")
        if self.batch_size < 1:
            raise TrainingError(f"batch_size must be at least 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise TrainingError(f"learning_rate must be positive, got {self.learning_rate}")


@dataclass(frozen=True)
class TrainingResult:
    """The written LoRA file and how training went."""

    path: Path
    rank: int
    steps: int
    final_loss: float
    seconds: float


def caption_with_trigger(caption: str, trigger_word: str | None) -> str:
    """The caption a training image is trained on: the trigger word first, as prompts use it."""
    caption = caption.strip()
    if not trigger_word:
        return caption
    return f"{trigger_word}, {caption}" if caption else trigger_word


def train_lora(
    spec: ModelSpec,
    examples: Sequence[TrainingExample],
    params: TrainingParams,
    out_file: Path,
    *,
    device: str | None = None,
    progress: ProgressCallback | None = None,
) -> TrainingResult:
    """Train a LoRA for ``spec`` on ``examples`` and save it to ``out_file`` (safetensors).

    Blocking torch work; ``progress`` may raise to stop (nothing is written then).
    """
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler
    from diffusers.training_utils import cast_training_params
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    if not MIN_IMAGES <= len(examples) <= MAX_IMAGES:
        raise TrainingError(f"training needs {MIN_IMAGES}-{MAX_IMAGES} images, got {len(examples)}")
    started = time.perf_counter()
    device = select_device(device or "auto")
    weight_dtype = select_dtype(device)
    resolution = params.resolution or spec.resolutions[spec.default_resolution]
    multiple = spec.family.size_multiple
    if resolution % multiple:
        raise TrainingError(f"resolution {resolution} is not a multiple of {multiple}")

    family = family_of(spec.family)
    pipe = load_pipeline(spec, device, weight_dtype)
    unet, vae = getattr(pipe, family.denoiser), pipe.vae
    for module in _frozen_modules(pipe):
        module.requires_grad_(False)
    flow = is_flow_matching(pipe)
    if not flow:
        noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)

    # Frozen parts, once: the latent distribution of each image, each caption's embedding.
    with torch.no_grad():
        pixels = torch.stack([training_pixels(ex.image, resolution) for ex in examples])
        moments = _latent_moments(vae, pixels.to(device, weight_dtype))
        captions = [ex.caption for ex in examples]
        if flow:
            recipe = flow_recipe(pipe, spec.default_guidance)
            text = recipe.encode(captions, family.sequence_length_of(spec) or 512)
        else:
            conditioning = _encode_captions(pipe, family, captions, resolution)

    # The LoRA: gaussian A, zero B, so training starts from the base model exactly.
    lora_config = LoraConfig(
        r=params.rank,
        lora_alpha=params.rank,
        init_lora_weights="gaussian",
        target_modules=attention_targets(unet) if flow else list(TARGET_MODULES),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed)
        unet.add_adapter(lora_config)
    if weight_dtype != torch.float32:
        cast_training_params(unet, dtype=torch.float32)  # LoRA weights train in fp32
    lora_parameters = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        lora_parameters, lr=params.learning_rate, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8
    )
    generator = torch.Generator("cpu").manual_seed(params.seed)
    batches = _batches(len(examples), params.batch_size, generator)
    if flow:
        flow_loss = FlowLoss(pipe.scheduler.config)
    else:
        num_train_timesteps = noise_scheduler.config.num_train_timesteps
        prediction_type = noise_scheduler.config.prediction_type
    autocast = torch.autocast(
        device_type=torch.device(device).type,
        dtype=weight_dtype,
        enabled=weight_dtype != torch.float32,
    )

    unet.train()
    loss_value = math.nan
    for step in range(1, params.steps + 1):
        index = next(batches)
        mean, std = moments[0][index], moments[1][index]
        sample = torch.randn(mean.shape, generator=generator).to(device, mean.dtype)
        if flow:
            latents = recipe.model_latents(mean + std * sample)
            loss = flow_loss(recipe, unet, latents, text.select(index), generator, autocast)
        else:
            latents = (mean + std * sample) * vae.config.scaling_factor
            noise = torch.randn(latents.shape, generator=generator).to(device, latents.dtype)
            timesteps = torch.randint(0, num_train_timesteps, (len(index),), generator=generator)
            timesteps = timesteps.to(device)
            noisy_latents = noise_scheduler.add_noise(latents, noise, timesteps)
            if prediction_type == "epsilon":
                target = noise
            elif prediction_type == "v_prediction":
                target = noise_scheduler.get_velocity(latents, noise, timesteps)
            else:
                raise TrainingError(f"unknown prediction type {prediction_type!r}")
            with autocast:
                model_pred = unet(
                    noisy_latents, timesteps, **conditioning.select(index), return_dict=False
                )[0]
            loss = F.mse_loss(model_pred.float(), target.float(), reduction="mean")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lora_parameters, params.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = float(loss.detach())
        if progress is not None:
            progress(step, params.steps, loss_value)

    unet.eval()
    layers = get_peft_model_state_dict(unet)
    if not flow:  # as the SD scripts save theirs (the FLUX scripts save peft's keys)
        layers = convert_state_dict_to_diffusers(layers)
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    family.pipeline_class(Task.TEXT_TO_IMAGE).save_lora_weights(
        save_directory=str(out_file.parent),
        weight_name=out_file.name,
        safe_serialization=True,
        **{f"{family.denoiser}_lora_layers": layers},
    )
    seconds = time.perf_counter() - started
    logger.info(
        "trained a rank-%d LoRA for %s: %d steps in %.1fs, final loss %.4f",
        params.rank, spec.id, params.steps, seconds, loss_value,
    )  # fmt: skip
    return TrainingResult(out_file, params.rank, params.steps, loss_value, seconds)


def _frozen_modules(pipe: Any) -> list[Any]:
    """Every model of the pipeline (denoiser, VAE, text encoders): only the LoRA trains."""
    import torch

    return [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]


def training_pixels(image: Image.Image, resolution: int) -> Any:
    """An image as training sees it, 3 x R x R in [-1, 1]: the short side resized to
    ``resolution``, a square cropped from the centre."""
    import numpy as np
    import torch

    image = image.convert("RGB")
    scale = resolution / min(image.size)
    size = (
        max(resolution, round(image.width * scale)),
        max(resolution, round(image.height * scale)),
    )
    image = image.resize(size, Image.Resampling.BILINEAR)
    left, top = (image.width - resolution) // 2, (image.height - resolution) // 2
    image = image.crop((left, top, left + resolution, top + resolution))
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _latent_moments(vae: Any, pixels: Any) -> tuple[Any, Any]:
    """Mean and standard deviation of each image's latent distribution (one at a time:
    a batch of 50 full-size images would not fit a VAE's activations)."""
    import torch

    means, stds = [], []
    for one in pixels.split(1):
        dist = vae.encode(one).latent_dist
        means.append(dist.mean.float())
        stds.append(dist.std.float())
    return torch.cat(means), torch.cat(stds)


@dataclass
class _Conditioning:
    """What the UNet is conditioned on, one row per training image."""

    encoder_hidden_states: Any
    text_embeds: Any = None  # SDXL: pooled embedding of text_encoder_2
    time_ids: Any = None  # SDXL: original size, crop, target size

    def select(self, index: Any) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"encoder_hidden_states": self.encoder_hidden_states[index]}
        if self.text_embeds is not None:
            kwargs["added_cond_kwargs"] = {
                "text_embeds": self.text_embeds[index],
                "time_ids": self.time_ids[index],
            }
        return kwargs


def _encode_captions(
    pipe: Any, family: Family, captions: list[str], resolution: int
) -> _Conditioning:
    """Captions through the pipeline's own prompt encoding, as generation conditions."""
    import torch

    device = pipe.device
    if not family.size_conditioning:
        embeds, _ = pipe.encode_prompt(captions, device, 1, False)
        return _Conditioning(embeds.float())
    embeds, _, pooled, _ = pipe.encode_prompt(
        prompt=captions, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
    )
    # Images are resized and centre-cropped to a square: original = target, crop at 0, 0.
    time_ids = torch.tensor(
        [[resolution, resolution, 0, 0, resolution, resolution]] * len(captions)
    )
    return _Conditioning(embeds.float(), pooled.float(), time_ids.to(device, torch.float32))


def _batches(count: int, batch_size: int, generator: Any):
    """Indices of each step's batch: seeded shuffles of the images, epoch after epoch."""
    import torch

    batch_size = min(batch_size, count)
    while True:
        order = torch.randperm(count, generator=generator)
        for start in range(0, count - batch_size + 1, batch_size):
            yield order[start : start + batch_size]
