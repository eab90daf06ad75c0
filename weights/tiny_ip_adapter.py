"""Tiny IP-Adapters for the tiny SD 1.5 and SDXL models: pins and reference mode
``ip_adapter`` run in tests and out of the box.

The folder has the layout of the real release (h94/IP-Adapter's ``models/`` and
``sdxl_models/``), so a real install is the same entry with another ``source``:

    <source>/ip-adapter.safetensors     "image_proj.*" and "ip_adapter.*" keys, the layout
                                        diffusers' ``load_ip_adapter`` reads
    <source>/image_encoder/             a ``CLIPVisionModelWithProjection`` (config.json,
                                        model.safetensors, preprocessor_config.json)

The adapter is the plain IP-Adapter (``image_proj.proj``/``image_proj.norm``: the CLIP
image embedding projected to 4 tokens) with one ``to_k_ip``/``to_v_ip`` pair per
cross-attention layer of the tiny UNet, numbered as diffusers numbers them (1, 3, 5, ...
in ``unet.attn_processors`` order). Weights are random, fixed by seed; the vision encoder
works on 32 px crops.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from weights.tiny import SEED, TINY_BUILDERS

WEIGHT_NAME = "ip-adapter.safetensors"
IMAGE_ENCODER = "image_encoder"
# The plain IP-Adapter turns one image embedding into this many cross-attention tokens.
TOKENS = 4
IMAGE_SIZE = 32


def build_tiny_ip_adapter_sd15(out: Path) -> Path:
    """Write the tiny SD 1.5 IP-Adapter folder at ``out`` (cross-attention width 32)."""
    return _build(out, "sd15", projection_dim=32, seed=SEED + 30)


def build_tiny_ip_adapter_sdxl(out: Path) -> Path:
    """Write the tiny SDXL IP-Adapter folder at ``out`` (cross-attention width 64)."""
    return _build(out, "sdxl", projection_dim=48, seed=SEED + 40)


def _build(out: Path, family: str, projection_dim: int, seed: int) -> Path:
    import torch
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    unet = TINY_BUILDERS[family]().unet
    generator = torch.Generator("cpu").manual_seed(seed)

    def linear(rows: int, cols: int) -> torch.Tensor:
        # nn.Linear's scale (1/sqrt(fan_in)), so the image tokens move the tiny UNet.
        return (torch.randn(rows, cols, generator=generator) / cols**0.5).contiguous()

    cross = int(unet.config.cross_attention_dim)
    state = {
        "image_proj.proj.weight": linear(TOKENS * cross, projection_dim),
        "image_proj.proj.bias": torch.zeros(TOKENS * cross),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    for key_id, hidden in _cross_attention_layers(unet):
        state[f"ip_adapter.{key_id}.to_k_ip.weight"] = linear(hidden, cross)
        state[f"ip_adapter.{key_id}.to_v_ip.weight"] = linear(hidden, cross)
    # One metadata key: safetensors writes a map in hash order, which varies by process.
    save_file(state, str(out / WEIGHT_NAME), metadata={"format": "pt"})
    _image_encoder(out / IMAGE_ENCODER, projection_dim, seed + 1)
    return out


def _cross_attention_layers(unet: Any) -> list[tuple[int, int]]:
    """(diffusers' key id, hidden size) of every cross-attention layer, as
    ``UNet2DConditionModel._convert_ip_adapter_attn_to_diffusers`` walks them."""
    channels = list(unet.config.block_out_channels)
    layers, key_id = [], 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(channels))[int(name[len("up_blocks.")])]
        else:
            hidden = channels[int(name[len("down_blocks.")])]
        layers.append((key_id, hidden))
        key_id += 2
    return layers


def _image_encoder(folder: Path, projection_dim: int, seed: int) -> None:
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=IMAGE_SIZE,
        patch_size=8,
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    model = CLIPVisionModelWithProjection(config)
    model.save_pretrained(folder, safe_serialization=True)
    processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    processor.save_pretrained(folder)
    # Keep the folder byte-stable across builds: drop volatile fields if any were written.
    config_path = folder / "config.json"
    data = json.loads(config_path.read_text())
    data.pop("transformers_version", None)
    config_path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
