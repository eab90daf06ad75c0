"""A tiny SD 1.5 ControlNet for tests and the out-of-the-box default.

Built with ``ControlNetModel.from_unet`` from the tiny SD 1.5 UNet's config (the same
blocks, channels and cross-attention width), so the engine's ``controlnet`` sibling runs
the real ``StableDiffusionControlNetPipeline`` on the tiny base. Weights are random but
fixed by seed; diffusers zero-initialises a ControlNet's output convolutions, so they are
re-drawn small here, or the ControlNet would add nothing and the path would go untested.
Saved with ``save_pretrained(safe_serialization=True)`` and loaded back through
``weights.loading.load_controlnet`` like a real one.
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
