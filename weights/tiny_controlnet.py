"""Tiny ControlNets for tests and the out-of-the-box default: SD 1.5 and FLUX.1.

Built with ``ControlNetModel.from_unet`` from the tiny SD 1.5 UNet's config (the same
blocks, channels and cross-attention width), so the engine's ``controlnet`` sibling runs
the real ``StableDiffusionControlNetPipeline`` on the tiny base. Weights are random but
fixed by seed; diffusers zero-initialises a ControlNet's output convolutions, so they are
re-drawn small here, or the ControlNet would add nothing and the path would go untested.
Saved with ``save_pretrained(safe_serialization=True)`` and loaded back through
``weights.loading.load_controlnet`` like a real one.

The FLUX.1 one (``build_tiny_controlnet_flux1``) is a ``FluxControlNetModel`` made with
``from_transformer`` from the tiny FLUX.1 [dev]'s transformer (its embedders and blocks
copied, one block of each kind, its width and rotary axes), so the engine's
``controlnet`` sibling runs the real ``FluxControlNetPipeline``: the control image is
VAE-encoded and packed like the latents and read by ``controlnet_x_embedder``. Its zero
layers (that embedder and the per-block output projections) are re-drawn small, seeded,
for the same reason as SD's.
"""

from __future__ import annotations

from pathlib import Path

from weights.tiny import SEED, _build_sd15

# Scale of the re-drawn zero convolutions: enough to move the tiny UNet, not swamp it.
ZERO_CONV_STD = 0.02


def build_tiny_controlnet_sd15(out: Path) -> Path:
    """Write the tiny SD 1.5 ControlNet to folder ``out`` (diffusers layout, safetensors)."""
    import torch
    from diffusers import ControlNetModel

    unet = _build_sd15().unet
    torch.manual_seed(SEED + 7)
    controlnet = ControlNetModel.from_unet(unet, conditioning_channels=3)
    generator = torch.Generator().manual_seed(SEED + 8)
    with torch.no_grad():
        zero_convs = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]
        for conv in zero_convs:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * ZERO_CONV_STD)
    controlnet.save_pretrained(Path(out), safe_serialization=True)
    return Path(out)


# Scale of the FLUX ControlNet's re-drawn zero layers (linear, 32 wide): enough to move
# the tiny transformer's residual stream visibly, not swamp it.
FLUX_ZERO_LINEAR_STD = 0.05


def build_tiny_controlnet_flux1(out: Path) -> Path:
    """Write the tiny FLUX.1 ControlNet to folder ``out`` (diffusers layout, safetensors)."""
    import torch
    from diffusers import FluxControlNetModel

    # Imported here: weights.tiny_flux imports weights.tiny, as this module does.
    from weights.tiny_flux import HEAD_DIM, tiny_flux1_transformer

    transformer = tiny_flux1_transformer()
    torch.manual_seed(SEED + 9)
    controlnet = FluxControlNetModel.from_transformer(
        transformer,
        num_layers=transformer.config.num_layers,
        num_single_layers=transformer.config.num_single_layers,
        attention_head_dim=HEAD_DIM,
        num_attention_heads=transformer.config.num_attention_heads,
    )
    generator = torch.Generator().manual_seed(SEED + 10)
    with torch.no_grad():
        zero_layers = [
            *controlnet.controlnet_blocks,
            *controlnet.controlnet_single_blocks,
            controlnet.controlnet_x_embedder,
        ]
        for layer in zero_layers:
            weight = torch.randn(layer.weight.shape, generator=generator)
            layer.weight.copy_(weight * FLUX_ZERO_LINEAR_STD)
    controlnet.save_pretrained(Path(out), safe_serialization=True)
    return Path(out)
