"""Write a FLUX transformer as Black Forest Labs ship it: the inverse of diffusers' key
mapping (``convert_flux_transformer_checkpoint_to_diffusers`` and its FLUX.2 sibling),
so the tiny transformers can be saved as the single files a studio downloads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file


def _swap_halves(weight: torch.Tensor) -> torch.Tensor:
    first, second = weight.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def flux1_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers ``FluxTransformer2DModel`` state dict in BFL's original layout."""
    sd = dict(state)
    out: dict[str, torch.Tensor] = {}

    def move(old: str, new: str) -> None:
        out[old] = sd.pop(new)

    for old, side in (("time_in", "timestep_embedder"), ("vector_in", "text_embedder"),
                      ("guidance_in", "guidance_embedder")):  # fmt: skip
        for old_layer, new_layer in (("in_layer", "linear_1"), ("out_layer", "linear_2")):
            for p in ("weight", "bias"):
                key = f"time_text_embed.{side}.{new_layer}.{p}"
                if key in sd:
                    move(f"{old}.{old_layer}.{p}", key)
    for p in ("weight", "bias"):
        move(f"txt_in.{p}", f"context_embedder.{p}")
        move(f"img_in.{p}", f"x_embedder.{p}")
    blocks = {int(k.split(".")[1]) for k in sd if k.startswith("transformer_blocks.")}
    for i in sorted(blocks):
        new, old = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        for p in ("weight", "bias"):
            move(f"{old}img_mod.lin.{p}", f"{new}norm1.linear.{p}")
            move(f"{old}txt_mod.lin.{p}", f"{new}norm1_context.linear.{p}")
            out[f"{old}img_attn.qkv.{p}"] = torch.cat(
                [sd.pop(f"{new}attn.to_{x}.{p}") for x in "qkv"]
            )
            out[f"{old}txt_attn.qkv.{p}"] = torch.cat(
                [sd.pop(f"{new}attn.add_{x}_proj.{p}") for x in "qkv"]
            )
            move(f"{old}img_mlp.0.{p}", f"{new}ff.net.0.proj.{p}")
            move(f"{old}img_mlp.2.{p}", f"{new}ff.net.2.{p}")
            move(f"{old}txt_mlp.0.{p}", f"{new}ff_context.net.0.proj.{p}")
            move(f"{old}txt_mlp.2.{p}", f"{new}ff_context.net.2.{p}")
            move(f"{old}img_attn.proj.{p}", f"{new}attn.to_out.0.{p}")
            move(f"{old}txt_attn.proj.{p}", f"{new}attn.to_add_out.{p}")
        move(f"{old}img_attn.norm.query_norm.scale", f"{new}attn.norm_q.weight")
        move(f"{old}img_attn.norm.key_norm.scale", f"{new}attn.norm_k.weight")
        move(f"{old}txt_attn.norm.query_norm.scale", f"{new}attn.norm_added_q.weight")
        move(f"{old}txt_attn.norm.key_norm.scale", f"{new}attn.norm_added_k.weight")
    singles = {int(k.split(".")[1]) for k in sd if k.startswith("single_transformer_blocks.")}
    for i in sorted(singles):
        new, old = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        for p in ("weight", "bias"):
            move(f"{old}modulation.lin.{p}", f"{new}norm.linear.{p}")
            parts = [sd.pop(f"{new}attn.to_{x}.{p}") for x in "qkv"]
            out[f"{old}linear1.{p}"] = torch.cat([*parts, sd.pop(f"{new}proj_mlp.{p}")])
            move(f"{old}linear2.{p}", f"{new}proj_out.{p}")
        move(f"{old}norm.query_norm.scale", f"{new}attn.norm_q.weight")
        move(f"{old}norm.key_norm.scale", f"{new}attn.norm_k.weight")
    for p in ("weight", "bias"):
        move(f"final_layer.linear.{p}", f"proj_out.{p}")
        out[f"final_layer.adaLN_modulation.1.{p}"] = _swap_halves(sd.pop(f"norm_out.linear.{p}"))
    assert not sd, f"unmapped FLUX.1 keys: {sorted(sd)[:5]}"
    return out


_FLUX2_RENAMES = {
    "x_embedder.": "img_in.",
    "context_embedder.": "txt_in.",
    "time_guidance_embed.timestep_embedder.linear_1.": "time_in.in_layer.",
    "time_guidance_embed.timestep_embedder.linear_2.": "time_in.out_layer.",
    "time_guidance_embed.guidance_embedder.linear_1.": "guidance_in.in_layer.",
    "time_guidance_embed.guidance_embedder.linear_2.": "guidance_in.out_layer.",
    "double_stream_modulation_img.linear.": "double_stream_modulation_img.lin.",
    "double_stream_modulation_txt.linear.": "double_stream_modulation_txt.lin.",
    "single_stream_modulation.linear.": "single_stream_modulation.lin.",
    "proj_out.": "final_layer.linear.",
}
_FLUX2_DOUBLE = {
    "attn.norm_q.weight": "img_attn.norm.query_norm.scale",
    "attn.norm_k.weight": "img_attn.norm.key_norm.scale",
    "attn.to_out.0.weight": "img_attn.proj.weight",
    "ff.linear_in.weight": "img_mlp.0.weight",
    "ff.linear_out.weight": "img_mlp.2.weight",
    "attn.norm_added_q.weight": "txt_attn.norm.query_norm.scale",
    "attn.norm_added_k.weight": "txt_attn.norm.key_norm.scale",
    "attn.to_add_out.weight": "txt_attn.proj.weight",
    "ff_context.linear_in.weight": "txt_mlp.0.weight",
    "ff_context.linear_out.weight": "txt_mlp.2.weight",
}
# diffusers' separate Q, K, V -> (BFL's fused projection, position in it).
_FLUX2_QKV = {
    "attn.to_q.weight": ("img_attn.qkv", 0),
    "attn.to_k.weight": ("img_attn.qkv", 1),
    "attn.to_v.weight": ("img_attn.qkv", 2),
    "attn.add_q_proj.weight": ("txt_attn.qkv", 0),
    "attn.add_k_proj.weight": ("txt_attn.qkv", 1),
    "attn.add_v_proj.weight": ("txt_attn.qkv", 2),
}
_FLUX2_SINGLE = {
    "attn.to_qkv_mlp_proj.weight": "linear1.weight",
    "attn.to_out.weight": "linear2.weight",
    "attn.norm_q.weight": "norm.query_norm.scale",
    "attn.norm_k.weight": "norm.key_norm.scale",
}


def flux2_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers ``Flux2Transformer2DModel`` state dict in BFL's original layout."""
    out: dict[str, torch.Tensor] = {}
    parts: dict[str, dict[int, torch.Tensor]] = {}
    for key, tensor in state.items():
        if key == "norm_out.linear.weight":
            out["final_layer.adaLN_modulation.1.weight"] = _swap_halves(tensor)
        elif key.startswith("transformer_blocks."):
            _, i, rest = key.split(".", 2)
            if rest in _FLUX2_QKV:
                fused, position = _FLUX2_QKV[rest]
                parts.setdefault(f"double_blocks.{i}.{fused}.weight", {})[position] = tensor
            else:
                out[f"double_blocks.{i}.{_FLUX2_DOUBLE[rest]}"] = tensor
        elif key.startswith("single_transformer_blocks."):
            _, i, rest = key.split(".", 2)
            out[f"single_blocks.{i}.{_FLUX2_SINGLE[rest]}"] = tensor
        else:
            prefix = next(p for p in _FLUX2_RENAMES if key.startswith(p))
            out[_FLUX2_RENAMES[prefix] + key.removeprefix(prefix)] = tensor
    for fused, pieces in parts.items():
        out[fused] = torch.cat([pieces[0], pieces[1], pieces[2]])
    return out


def write_transformer_file(
    transformer: Any, path: Path, *, bundled: bool = False, extra: dict | None = None
) -> Path:
    """Save ``transformer`` (FLUX.1 or FLUX.2) as BFL's single file; ``bundled``: under
    ``model.diffusion_model.`` as ComfyUI/civitai exports, with ``extra`` tensors beside."""
    state = {k: v.detach().clone() for k, v in transformer.state_dict().items()}
    original = (
        flux2_original(state)
        if "single_stream_modulation.linear.weight" in state
        else flux1_original(state)
    )
    if bundled:
        original = {f"model.diffusion_model.{k}": v for k, v in original.items()}
    original.update(extra or {})
    save_file({k: v.contiguous() for k, v in original.items()}, str(path))
    return path
