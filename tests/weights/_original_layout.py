"""Diffusers -> original (LDM / A1111) key layout, for writing single-file test checkpoints.

A config-driven port of diffusers' ``scripts/convert_diffusers_to_original_stable_diffusion.py``
and ``convert_diffusers_to_original_sdxl.py``: those hard-code the full-size block counts,
these maps derive them from the model configs so they also work at toy width. Each
diffusers key maps through exactly one prefix rule; a key no rule covers raises, so a
missed layer fails the test instead of silently dropping out of the file.

Used only by tests: Kiln loads original-layout files, it never writes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

Rules = dict[str, tuple[str, str]]  # diffusers prefix -> (original prefix, kind of block)

_UNET_RESNET = (
    ("norm1.", "in_layers.0."),
    ("conv1.", "in_layers.2."),
    ("norm2.", "out_layers.0."),
    ("conv2.", "out_layers.3."),
    ("time_emb_proj.", "emb_layers.1."),
    ("conv_shortcut.", "skip_connection."),
)
_VAE_RESNET = (("conv_shortcut.", "nin_shortcut."),)
_VAE_ATTENTION = (
    ("group_norm.", "norm."),
    ("to_q.", "q."),
    ("to_k.", "k."),
    ("to_v.", "v."),
    ("to_out.0.", "proj_out."),
)


def _layers_per_block(config: Mapping[str, Any]) -> int:
    layers = config["layers_per_block"]
    if not isinstance(layers, int):
        raise ValueError("only a single layers_per_block is mapped, as in SD 1.5 and SDXL")
    return layers


def unet_rules(config: Mapping[str, Any]) -> Rules:
    """Prefix rules for a UNet2DConditionModel of SD 1.5 / SDXL shape, from its config."""
    per = _layers_per_block(config)
    blocks = len(config["block_out_channels"])
    rules: Rules = {
        "time_embedding.linear_1.": ("time_embed.0.", "plain"),
        "time_embedding.linear_2.": ("time_embed.2.", "plain"),
        "add_embedding.linear_1.": ("label_emb.0.0.", "plain"),
        "add_embedding.linear_2.": ("label_emb.0.2.", "plain"),
        "conv_in.": ("input_blocks.0.0.", "plain"),
        "conv_norm_out.": ("out.0.", "plain"),
        "conv_out.": ("out.2.", "plain"),
        "mid_block.resnets.0.": ("middle_block.0.", "resnet"),
        "mid_block.attentions.0.": ("middle_block.1.", "plain"),
        "mid_block.resnets.1.": ("middle_block.2.", "resnet"),
    }
    for i in range(blocks):
        # Input block 0 is conv_in; then each down block takes `per` resnet(+attention)
        # blocks and one downsampler block.
        for j in range(per):
            n = 1 + i * (per + 1) + j
            rules[f"down_blocks.{i}.resnets.{j}."] = (f"input_blocks.{n}.0.", "resnet")
            rules[f"down_blocks.{i}.attentions.{j}."] = (f"input_blocks.{n}.1.", "plain")
        if i < blocks - 1:
            n = (i + 1) * (per + 1)
            rules[f"down_blocks.{i}.downsamplers.0.conv."] = (f"input_blocks.{n}.0.op.", "plain")
        # Up blocks have one resnet more; the upsampler sits in the last one's block, after
        # the attention where the up block has one.
        has_attention = "CrossAttn" in config["up_block_types"][i]
        for j in range(per + 1):
            n = i * (per + 1) + j
            rules[f"up_blocks.{i}.resnets.{j}."] = (f"output_blocks.{n}.0.", "resnet")
            rules[f"up_blocks.{i}.attentions.{j}."] = (f"output_blocks.{n}.1.", "plain")
        if i < blocks - 1:
            n = i * (per + 1) + per
            slot = 2 if has_attention else 1
            rules[f"up_blocks.{i}.upsamplers.0.conv."] = (
                f"output_blocks.{n}.{slot}.conv.",
                "plain",
            )
    return rules


def vae_rules(config: Mapping[str, Any]) -> Rules:
    """Prefix rules for an AutoencoderKL, from its config (decoder blocks run in reverse)."""
    per = _layers_per_block(config)
    blocks = len(config["block_out_channels"])
    rules: Rules = {
        "quant_conv.": ("quant_conv.", "plain"),
        "post_quant_conv.": ("post_quant_conv.", "plain"),
    }
    for part in ("encoder", "decoder"):
        rules[f"{part}.conv_in."] = (f"{part}.conv_in.", "plain")
        rules[f"{part}.conv_out."] = (f"{part}.conv_out.", "plain")
        rules[f"{part}.conv_norm_out."] = (f"{part}.norm_out.", "plain")
        rules[f"{part}.mid_block.attentions.0."] = (f"{part}.mid.attn_1.", "vae_attention")
        for k in range(2):
            rules[f"{part}.mid_block.resnets.{k}."] = (f"{part}.mid.block_{k + 1}.", "vae_resnet")
    for i in range(blocks):
        for j in range(per):
            rules[f"encoder.down_blocks.{i}.resnets.{j}."] = (
                f"encoder.down.{i}.block.{j}.",
                "vae_resnet",
            )
        original = blocks - 1 - i
        for j in range(per + 1):
            rules[f"decoder.up_blocks.{i}.resnets.{j}."] = (
                f"decoder.up.{original}.block.{j}.",
                "vae_resnet",
            )
        if i < blocks - 1:
            rules[f"encoder.down_blocks.{i}.downsamplers.0.conv."] = (
                f"encoder.down.{i}.downsample.conv.",
                "plain",
            )
            rules[f"decoder.up_blocks.{i}.upsamplers.0.conv."] = (
                f"decoder.up.{original}.upsample.conv.",
                "plain",
            )
    return rules


def _rename(rest: str, pairs: tuple[tuple[str, str], ...]) -> str:
    for new, old in pairs:
        if rest.startswith(new):
            return old + rest[len(new) :]
    return rest


def apply_rules(state_dict: Mapping[str, torch.Tensor], rules: Rules) -> dict[str, torch.Tensor]:
    """Rename every key by the one rule whose prefix it starts with; raise if none or two."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        matches = [p for p in rules if key.startswith(p)]
        if len(matches) != 1:
            raise KeyError(f"{key}: {len(matches)} layout rules match ({matches})")
        prefix = matches[0]
        original, kind = rules[prefix]
        rest = key[len(prefix) :]
        if kind == "resnet":
            rest = _rename(rest, _UNET_RESNET)
        elif kind == "vae_resnet":
            rest = _rename(rest, _VAE_RESNET)
        elif kind == "vae_attention":
            rest = _rename(rest, _VAE_ATTENTION)
            if rest.endswith(".weight") and tensor.ndim == 2:
                tensor = tensor[:, :, None, None]  # the original attention uses 1x1 convs
        out[original + rest] = tensor
    return out


def clip_to_original(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, Any]:
    """OpenAI CLIP (transformers) keys under ``prefix``, as the original files store them.

    transformers >= 5.6 drops the ``text_model.`` level of CLIPTextModel; the original
    files keep it. They also carry the ``position_ids`` buffer, which the loader must ignore.
    """
    out = {}
    for key, tensor in state_dict.items():
        key = key if key.startswith("text_model.") else f"text_model.{key}"
        out[prefix + key] = tensor
    positions = out[prefix + "text_model.embeddings.position_embedding.weight"].shape[0]
    out[prefix + "text_model.embeddings.position_ids"] = torch.arange(positions)[None]
    return out


_OPEN_CLIP_LAYER = (
    ("layer_norm1.", "ln_1."),
    ("layer_norm2.", "ln_2."),
    ("mlp.fc1.", "mlp.c_fc."),
    ("mlp.fc2.", "mlp.c_proj."),
    ("self_attn.out_proj.", "attn.out_proj."),
)


def open_clip_to_original(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, Any]:
    """CLIPTextModelWithProjection keys as open_clip names them (SDXL's second encoder).

    q/k/v projections become one ``in_proj``; ``text_projection`` is stored transposed,
    as open_clip multiplies ``x @ text_projection``.
    """
    fixed = {
        "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
        "text_model.embeddings.position_embedding.weight": "positional_embedding",
        "text_model.final_layer_norm.weight": "ln_final.weight",
        "text_model.final_layer_norm.bias": "ln_final.bias",
    }
    layer_prefix = "text_model.encoder.layers."
    out: dict[str, Any] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state_dict.items():
        if key in fixed:
            out[prefix + fixed[key]] = tensor
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = tensor.T.contiguous()
        elif key.startswith(layer_prefix):
            index, rest = key[len(layer_prefix) :].split(".", 1)
            block = f"{prefix}transformer.resblocks.{index}."
            if rest.startswith(("self_attn.q_proj.", "self_attn.k_proj.", "self_attn.v_proj.")):
                which, kind = rest[len("self_attn.") :].split(".")  # "q_proj", "weight"
                qkv.setdefault(f"{block}attn.in_proj_{kind}", {})[which[0]] = tensor
            else:
                renamed = _rename(rest, _OPEN_CLIP_LAYER)
                if renamed == rest:
                    raise KeyError(f"{key}: no open_clip name")
                out[block + renamed] = tensor
        else:
            raise KeyError(f"{key}: no open_clip name")
    for key, parts in qkv.items():
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def original_state_dict(pipe: Any) -> dict[str, torch.Tensor]:
    """One original-layout state dict for an SD 1.5 or SDXL pipeline's weights."""
    unet = apply_rules(pipe.unet.state_dict(), unet_rules(pipe.unet.config))
    vae = apply_rules(pipe.vae.state_dict(), vae_rules(pipe.vae.config))
    out = {f"model.diffusion_model.{k}": v for k, v in unet.items()}
    out |= {f"first_stage_model.{k}": v for k, v in vae.items()}
    if getattr(pipe, "text_encoder_2", None) is None:
        out |= clip_to_original(pipe.text_encoder.state_dict(), "cond_stage_model.transformer.")
    else:
        te = pipe.text_encoder.state_dict()
        out |= clip_to_original(te, "conditioner.embedders.0.transformer.")
        te2 = pipe.text_encoder_2.state_dict()
        out |= open_clip_to_original(te2, "conditioner.embedders.1.model.")
    return out


def write_single_file(pipe: Any, path: Path) -> Path:
    """Write ``pipe``'s UNet, VAE and text encoder(s) as one original-layout safetensors."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in original_state_dict(pipe).items()}
    save_file(tensors, str(path))
    return path
