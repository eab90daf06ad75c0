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


def test_the_tiny_flux_controlnet_is_made_from_the_tiny_flux1_transformer_and_loads(catalog):
    """A ``FluxControlNetModel`` folder of safetensors, loaded back through the loader as
    its family's class, shaped as the tiny FLUX.1's transformer (width, rotary axes, text
    and pooled widths, guidance embedding), its zero layers re-drawn."""
    from diffusers import FluxControlNetModel

    from pipelines.families import family_of

    component = catalog.components["tiny-controlnet-flux1"]
    assert component.kind == "controlnet" and component.families == ("flux1",)
    assert (component.source / MANIFEST).exists()
    spec = catalog.get("tiny-flux1")
    model_class = family_of(spec.family).controlnet_model
    controlnet = load_controlnet(component, "cpu", None, model_class)
    assert type(controlnet) is FluxControlNetModel
    transformer = json.loads((spec.source / "transformer" / "config.json").read_text())
    for key in ("in_channels", "attention_head_dim", "num_attention_heads", "guidance_embeds",
                "joint_attention_dim", "pooled_projection_dim", "axes_dims_rope"):  # fmt: skip
        value = controlnet.config[key]
        assert (list(value) if isinstance(value, tuple) else value) == transformer[key], key
    zero_layers = [*controlnet.controlnet_blocks, *controlnet.controlnet_single_blocks]
    assert all(layer.weight.abs().sum() > 0 for layer in zero_layers)
    assert controlnet.controlnet_x_embedder.weight.abs().sum() > 0
    assert not list(component.source.glob("*.bin"))  # safetensors only
