"""Real LoRA files for the tiny models, made in the test (nothing is downloaded).

- ``peft_lora``: diffusers/peft layout, as diffusers' training scripts write it: peft's
  ``LoraConfig`` on the UNet attention projections and the text encoders' q/k/v/out
  projections, saved with the pipeline's ``save_lora_weights``.
- ``kohya_lora``: kohya/civitai layout (``lora_unet_…``, ``lora_te_…`` or
  ``lora_te1_…``/``lora_te2_…``, ``lora_down``/``lora_up``/``alpha``), shaped from the
  loaded model's own modules. For SDXL the UNet keys use the SGM block numbers kohya's
  SDXL trainer writes (``input_blocks_3_1_…``), which diffusers maps back by the config.

Shared by tests/styles and tests/serving/test_styles.py (imported by path there).
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
TEXT_ENCODERS = ("text_encoder", "text_encoder_2")


def fresh_pipeline(source: str, family: str) -> Any:
    """A newly loaded tiny pipeline, the caller's own (for tests that add adapters)."""
    import diffusers

    cls = diffusers.StableDiffusionPipeline
    if family == "sdxl":
        cls = diffusers.StableDiffusionXLPipeline
    pipe = cls.from_pretrained(source, local_files_only=True, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@functools.lru_cache(maxsize=4)
def tiny_pipeline(source: str, family: str) -> Any:
    """The tiny model at ``source``, loaded once and shared: never give it adapters."""
    return fresh_pipeline(source, family)


def peft_lora(source: str, family: str, out: Path, rank: int = 4, seed: int = 0) -> Path:
    """A diffusers/peft-layout LoRA of ``rank`` for the model at ``source``, with UNet and
    text-encoder layers, written to ``out`` (a .safetensors file)."""
    import torch
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = tiny_pipeline(source, family)
    torch.manual_seed(seed)
    config = {"r": rank, "lora_alpha": rank, "init_lora_weights": "gaussian"}
    # Copies: the cached pipeline stays without adapters.
    unet = copy.deepcopy(pipe.unet)
    unet.add_adapter(LoraConfig(target_modules=list(UNET_TARGETS), **config))
    layers: dict[str, Any] = {
        "unet_lora_layers": convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    }
    for name in TEXT_ENCODERS:
        if getattr(pipe, name, None) is None:
            continue
        encoder = copy.deepcopy(getattr(pipe, name))
        encoder.add_adapter(LoraConfig(target_modules=list(TEXT_TARGETS), **config))
        # lora_B starts at zero in peft; make the text-encoder layers do something.
        for module_name, param in encoder.named_parameters():
            if "lora_B" in module_name:
                torch.nn.init.normal_(param, std=0.02)
        layers[f"{name}_lora_layers"] = convert_state_dict_to_diffusers(
            get_peft_model_state_dict(encoder)
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    type(pipe).save_lora_weights(
        str(out.parent), weight_name=out.name, safe_serialization=True, **layers
    )
    return out


def _sgm_name(name: str, layers_per_block: int) -> str:
    """diffusers UNet module name -> kohya's SDXL (SGM) name, for attention modules."""
    per = layers_per_block + 1
    m = re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", name)
    if m:
        return f"input_blocks.{int(m[1]) * per + int(m[2]) + 1}.1.{m[3]}"
    m = re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", name)
    if m:
        return f"output_blocks.{int(m[1]) * per + int(m[2])}.1.{m[3]}"
    m = re.match(r"mid_block\.attentions\.0\.(.*)", name)
    if m:
        return f"middle_block.1.{m[1]}"
    raise ValueError(f"no SGM name for {name}")


def kohya_tensors(source: str, family: str, rank: int = 4, seed: int = 0) -> dict[str, Any]:
    """Kohya-layout LoRA tensors for the model at ``source``, shaped from its modules."""
    import torch

    pipe = tiny_pipeline(source, family)
    gen = torch.Generator().manual_seed(seed)
    tensors: dict[str, Any] = {}

    def add(kohya_name: str, module: torch.nn.Linear) -> None:
        base = kohya_name.replace(".", "_")
        down = torch.randn(rank, module.in_features, generator=gen) * 0.1
        up = torch.randn(module.out_features, rank, generator=gen) * 0.1
        tensors[f"{base}.lora_down.weight"] = down
        tensors[f"{base}.lora_up.weight"] = up
        tensors[f"{base}.alpha"] = torch.tensor(float(rank))

    for name, module in pipe.unet.named_modules():
        if name.endswith(UNET_TARGETS) and isinstance(module, torch.nn.Linear):
            if family == "sdxl":
                name = _sgm_name(name, pipe.unet.config.layers_per_block)
            add(f"lora_unet_{name}", module)
    prefixes = {"text_encoder": "lora_te1_" if family == "sdxl" else "lora_te_"}
    prefixes["text_encoder_2"] = "lora_te2_"
    for component, prefix in prefixes.items():
        encoder = getattr(pipe, component, None)
        if encoder is None:
            continue
        for name, module in encoder.named_modules():
            if name.endswith(TEXT_TARGETS) and isinstance(module, torch.nn.Linear):
                # Files written by kohya carry CLIP's ``text_model.`` level, which
                # transformers 5 removed from CLIPTextModel (not from its sibling).
                add(f"{prefix}text_model.{name.removeprefix('text_model.')}", module)
    if not tensors:
        raise RuntimeError(f"no plain Linear attention modules in {source}: adapters on it?")
    return tensors


def kohya_lora(source: str, family: str, out: Path, rank: int = 4, seed: int = 0) -> Path:
    """A kohya/civitai-layout LoRA file for the model at ``source``."""
    from safetensors.torch import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        kohya_tensors(source, family, rank, seed), str(out), metadata={"ss_network_dim": str(rank)}
    )
    return out
