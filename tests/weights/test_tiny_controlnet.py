"""The tiny SD 1.5 ControlNet: built from the tiny UNet's config, loaded back as a real
ControlNet folder, and not a no-op (its zero convolutions are re-drawn)."""

from __future__ import annotations

import json

from weights.loading import load_controlnet
from weights.tiny import MANIFEST


def test_the_tiny_controlnet_matches_the_tiny_unet_and_loads(catalog):
    component = catalog.components["tiny-controlnet-sd15"]
    assert component.kind == "controlnet" and component.families == ("sd15",)
    assert (component.source / MANIFEST).exists()
    unet = json.loads((catalog.get("tiny-sd15").source / "unet" / "config.json").read_text())
    controlnet = load_controlnet(component, "cpu", None)
    config = controlnet.config
    assert list(config.block_out_channels) == unet["block_out_channels"]
    assert config.cross_attention_dim == unet["cross_attention_dim"]
    assert config.conditioning_channels == 3
    assert all(conv.weight.abs().sum() > 0 for conv in controlnet.controlnet_down_blocks)
    assert controlnet.controlnet_mid_block.weight.abs().sum() > 0
    assert not list(component.source.glob("*.bin"))  # safetensors only
