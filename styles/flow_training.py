"""What private style training does differently on a flow-matching transformer (FLUX.1,
FLUX.2 [klein]): the recipe of diffusers' ``examples/dreambooth/train_dreambooth_lora_flux.py``
(and its FLUX.2 sibling), the loop itself being ``styles.training``'s.

    recipe = flow_recipe(pipe, guidance=3.5)
    latents = recipe.model_latents(vae_sample)          # the transformer's latent space
    text = recipe.encode(captions, max_sequence_length)  # cached once, rows per caption
    loss = flow_loss(recipe, transformer, latents, text.select(index), generator)

The recipe, as the script has it:

- LoRA on the attention projections of both block kinds (``attention_targets``): the
  double-stream blocks' image and text q/k/v and outputs, the single-stream blocks'
  q/k/v (FLUX.1) or fused q/k/v/MLP projection and output (FLUX.2).
- Flow matching: ``x_t = (1 - sigma) * x_0 + sigma * noise`` at timesteps drawn as the
  script's default ``weighting_scheme="none"`` draws them (``u ~ U(0, 1)``, the index
  ``u * num_train_timesteps`` into the model's own ``FlowMatchEulerDiscreteScheduler``
  timesteps and sigmas), the transformer's prediction regressed onto the velocity
  ``noise - x_0`` with MSE (``compute_loss_weighting_for_sd3("none")``: weight 1).
- Latents as the pipeline makes them: FLUX.1's VAE latents shifted and scaled, packed
  2x2 with their position ids; FLUX.2's patchified 2x2 and normalised by the VAE's batch
  norm statistics. FLUX.1 [dev]'s embedded guidance is the model's default guidance
  (the script's ``--guidance_scale`` 3.5); a model without it takes none.
- Text embeddings from the pipeline's own ``encode_prompt`` at the model's sequence
  length, computed once before the loop (the text encoders are frozen), as the script's
  cached prompt embeddings.

Which recipe a pipeline takes is a registry by pipeline class (``RECIPES``): loud on a
pipeline it does not know.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class FlowText(Protocol):
    def select(self, index: Any) -> dict[str, Any]: ...


class FlowRecipe(Protocol):
    """How one flow-matching pipeline's transformer is trained."""

    def model_latents(self, vae_latents: Any) -> Any: ...

    def encode(self, captions: list[str], max_sequence_length: int) -> FlowText: ...

    def predict(self, transformer: Any, latents: Any, timesteps: Any, text: dict) -> Any: ...


def attention_targets(transformer: Any) -> list[str]:
    """The attention projections of both block kinds: every Linear under ``.attn.`` of a
    double- or single-stream block, by full module name."""
    import torch

    blocks = ("transformer_blocks.", "single_transformer_blocks.")
    return sorted(
        name
        for name, module in transformer.named_modules()
        if isinstance(module, torch.nn.Linear) and name.startswith(blocks) and ".attn." in name
    )


@dataclass
class _Rows:
    """Per-caption tensors (``per_row``) and ones shared by every row (``shared``)."""

    per_row: dict[str, Any]
    shared: dict[str, Any]

    def select(self, index: Any) -> dict[str, Any]:
        return {**{k: v[index] for k, v in self.per_row.items()}, **self.shared}


def _forward(
    transformer: Any, packed: Any, timesteps: Any, img_ids: Any, text: dict, guidance: float
) -> Any:
    """One transformer call as the pipelines make it (timesteps in [0, 1]; the embedded
    guidance where the transformer takes one)."""
    import torch

    embedded = None
    if transformer.config.guidance_embeds:
        embedded = torch.full((packed.shape[0],), guidance, device=packed.device)
    return transformer(
        hidden_states=packed,
        timestep=timesteps / 1000,
        guidance=embedded,
        img_ids=img_ids,
        return_dict=False,
        **text,
    )[0]


@dataclass
class Flux1Recipe:
    """FLUX.1 (``FluxPipeline``): 16-channel latents packed 2x2, T5 sequence + CLIP pooled."""

    pipe: Any
    guidance: float

    def model_latents(self, vae_latents: Any) -> Any:
        config = self.pipe.vae.config
        return (vae_latents - config.shift_factor) * config.scaling_factor

    def encode(self, captions: list[str], max_sequence_length: int) -> FlowText:
        embeds, pooled, text_ids = self.pipe.encode_prompt(
            prompt=captions,
            prompt_2=None,
            device=self.pipe.device,
            max_sequence_length=max_sequence_length,
        )
        return _Rows(
            {"encoder_hidden_states": embeds.float(), "pooled_projections": pooled.float()},
            {"txt_ids": text_ids},
        )

    def predict(self, transformer: Any, latents: Any, timesteps: Any, text: dict) -> Any:
        from diffusers import FluxPipeline

        b, c, h, w = latents.shape
        packed = FluxPipeline._pack_latents(latents, b, c, h, w)
        img_ids = FluxPipeline._prepare_latent_image_ids(
            b, h // 2, w // 2, latents.device, latents.dtype
        )
        out = _forward(transformer, packed, timesteps, img_ids, text, self.guidance)
        factor = self.pipe.vae_scale_factor
        return FluxPipeline._unpack_latents(out, h * factor, w * factor, factor)


@dataclass
class Flux2Recipe:
    """FLUX.2 [klein] (``Flux2KleinPipeline``): 32-channel latents patchified 2x2 and
    batch-normalised, Qwen3's stacked hidden states."""

    pipe: Any
    guidance: float

    def model_latents(self, vae_latents: Any) -> Any:
        import torch

        pipe = self.pipe
        patches = pipe._patchify_latents(vae_latents)
        bn = pipe.vae.bn
        mean = bn.running_mean.view(1, -1, 1, 1).to(patches)
        std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + pipe.vae.config.batch_norm_eps)
        return (patches - mean) / std.to(patches)

    def encode(self, captions: list[str], max_sequence_length: int) -> FlowText:
        embeds, text_ids = self.pipe.encode_prompt(
            prompt=captions, device=self.pipe.device, max_sequence_length=max_sequence_length
        )
        return _Rows({"encoder_hidden_states": embeds.float(), "txt_ids": text_ids}, {})

    def predict(self, transformer: Any, latents: Any, timesteps: Any, text: dict) -> Any:

        b, c, h, w = latents.shape
        img_ids = self.pipe._prepare_latent_ids(latents).to(latents.device)
        packed = self.pipe._pack_latents(latents)
        out = _forward(transformer, packed, timesteps, img_ids, text, self.guidance)
        return out[:, : h * w].permute(0, 2, 1).reshape(b, c, h, w)


# Pipeline class name -> its recipe (the text-to-image pipeline a style trains on).
RECIPES: dict[str, type] = {
    "FluxPipeline": Flux1Recipe,
    "Flux2KleinPipeline": Flux2Recipe,
}


def is_flow_matching(pipe: Any) -> bool:
    """Whether ``pipe`` denoises by flow matching (its scheduler says so)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return isinstance(pipe.scheduler, FlowMatchEulerDiscreteScheduler)


def flow_recipe(pipe: Any, guidance: float) -> FlowRecipe:
    """The recipe for ``pipe``'s class; loud on one Kiln does not train."""
    name = type(pipe).__name__
    try:
        return RECIPES[name](pipe, guidance)
    except KeyError:
        known = ", ".join(RECIPES)
        raise ValueError(f"no flow-matching training recipe for {name}; known: {known}") from None


class FlowLoss:
    """The flow-matching loss of one batch, with the model's own timesteps and sigmas."""

    def __init__(self, scheduler_config: Any) -> None:
        from diffusers import FlowMatchEulerDiscreteScheduler

        scheduler = FlowMatchEulerDiscreteScheduler.from_config(scheduler_config)
        self.count = scheduler.config.num_train_timesteps
        self.timesteps = scheduler.timesteps
        self.sigmas = scheduler.sigmas

    def __call__(
        self,
        recipe: FlowRecipe,
        transformer: Any,
        latents: Any,
        text: dict[str, Any],
        generator: Any,
        autocast: Any,
    ) -> Any:
        import torch
        from diffusers.training_utils import (
            compute_density_for_timestep_sampling,
            compute_loss_weighting_for_sd3,
        )

        b = latents.shape[0]
        device = latents.device
        noise = torch.randn(latents.shape, generator=generator).to(device, latents.dtype)
        u = compute_density_for_timestep_sampling("none", b, generator=generator)
        indices = (u * self.count).long()
        timesteps = self.timesteps[indices].to(device)
        sigmas = self.sigmas[indices].to(device, latents.dtype).view(-1, 1, 1, 1)
        noisy = (1.0 - sigmas) * latents + sigmas * noise
        with autocast:
            prediction = recipe.predict(transformer, noisy, timesteps, text)
        weighting = compute_loss_weighting_for_sd3("none", sigmas)
        target = noise - latents
        error = (weighting.float() * (prediction.float() - target.float()) ** 2).reshape(b, -1)
        return error.mean(1).mean()
