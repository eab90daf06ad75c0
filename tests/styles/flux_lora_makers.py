"""FLUX LoRA files in every layout people have, for the tiny FLUX transformers, made in the
test from one set of per-module matrices (nothing downloaded).

``flux_layers(transformer, seed)`` draws rank-``RANK`` (A, B) pairs for the attention
projections of both block kinds (and a single block's MLP input, which FLUX.1 fuses with
q, k and v), A shared within each group a file format fuses (q/k/v; FLUX.1's single-block
q/k/v/MLP), so every layout can state them exactly. Each writer returns the file's
tensors *and* the subset of modules it states (XLabs has no single-block MLP), so a test
can compare a layout's images with the diffusers-layout file of the same layers.

Key names, per layout:

- diffusers/peft: ``transformer.<module>.lora_A.weight`` / ``lora_B`` (what
  ``save_lora_weights`` writes; ai-toolkit writes the same for FLUX.1, for more modules).
- kohya (sd-scripts): ``lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight``, fused
  q/k/v as a block-diagonal up matrix (rank 3r), ``…_img_attn_proj``, ``…_txt_attn_qkv``,
  ``…_txt_attn_proj``, ``lora_unet_single_blocks_0_linear1`` (FLUX.1: q/k/v/MLP, rank 4r;
  FLUX.2: the fused projection as is), ``…_linear2``, each with ``.alpha``.
- XLabs (FLUX.1): ``double_blocks.0.processor.qkv_lora1.down.weight`` (image q/k/v),
  ``qkv_lora2`` (text), ``proj_lora1``/``proj_lora2``, ``single_blocks.0.processor.qkv_lora``
  and ``proj_lora``; ``down``/``up`` matrices.
- BFL: the original module names, ``diffusion_model.double_blocks.0.img_attn.qkv.lora_A``
  (shared A, stacked B), ``…txt_attn.qkv``, ``…img_attn.proj``, ``single_blocks.0.linear1``,
  ``linear2``; FLUX.1 also as ComfyUI saves it (``lora_down``/``lora_up``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

RANK = 4
# module -> (A, B)
Layers = dict[str, tuple[Any, Any]]

DOUBLE_IMG = ("attn.to_q", "attn.to_k", "attn.to_v")
DOUBLE_TXT = ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")
FLUX1_SINGLE = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")


def _groups(transformer: Any) -> list[tuple[str, ...]]:
    """Groups of modules that share A (one per fused layer of the original layout)."""
    flux2 = hasattr(transformer.single_transformer_blocks[0].attn, "to_qkv_mlp_proj")
    groups: list[tuple[str, ...]] = []
    for i in range(len(transformer.transformer_blocks)):
        d = f"transformer_blocks.{i}"
        groups += [
            tuple(f"{d}.{m}" for m in DOUBLE_IMG),
            tuple(f"{d}.{m}" for m in DOUBLE_TXT),
            (f"{d}.attn.to_out.0",),
            (f"{d}.attn.to_add_out",),
        ]
    for i in range(len(transformer.single_transformer_blocks)):
        s = f"single_transformer_blocks.{i}"
        if flux2:
            groups += [(f"{s}.attn.to_qkv_mlp_proj",), (f"{s}.attn.to_out",)]
        else:
            groups += [tuple(f"{s}.{m}" for m in FLUX1_SINGLE), (f"{s}.proj_out",)]
    return groups


def flux_layers(transformer: Any, seed: int = 0, scale: float = 0.3) -> Layers:
    """Random (A, B) pairs for the tiny ``transformer``'s attention (and FLUX.1's
    single-block MLP input), A shared within each fused group."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    layers: Layers = {}
    for group in _groups(transformer):
        first = transformer.get_submodule(group[0])
        a = torch.randn(RANK, first.in_features, generator=gen) * scale
        for name in group:
            out = transformer.get_submodule(name).out_features
            layers[name] = (a, torch.randn(out, RANK, generator=gen) * scale)
    return layers


def extra_layers(transformer: Any, seed: int = 1, scale: float = 0.3) -> Layers:
    """Feed-forward and modulation layers, as ai-toolkit's FLUX.1 LoRAs also adapt."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    layers: Layers = {}
    for name, module in transformer.named_modules():
        block = name.startswith("transformer_blocks.") and (".ff" in name or ".norm1" in name)
        if isinstance(module, torch.nn.Linear) and block:
            a = torch.randn(RANK, module.in_features, generator=gen) * scale
            layers[name] = (a, torch.randn(module.out_features, RANK, generator=gen) * scale)
    return layers


def diffusers_tensors(layers: Layers) -> tuple[dict[str, Any], Layers]:
    out = {}
    for name, (a, b) in layers.items():
        out[f"transformer.{name}.lora_A.weight"] = a.clone()
        out[f"transformer.{name}.lora_B.weight"] = b.clone()
    return out, layers


def _block_diag(layers: Layers, names: tuple[str, ...]) -> tuple[Any, Any]:
    """Separate A's stacked, B's block-diagonal: kohya's fused form of several LoRAs."""
    import torch

    down = torch.cat([layers[n][0] for n in names])
    up = torch.block_diag(*[layers[n][1] for n in names])
    return down, up


def _stacked(layers: Layers, names: tuple[str, ...]) -> tuple[Any, Any]:
    """One shared A, B's stacked: the fused form when the group shares A."""
    import torch

    return layers[names[0]][0], torch.cat([layers[n][1] for n in names])


def _fused_names(layers: Layers) -> list[tuple[str, str, tuple[str, ...]]]:
    """(BFL original name, kohya name, diffusers modules) of each fused or single layer."""
    out = []
    blocks = sorted({n.split(".")[1] for n in layers if n.startswith("transformer_blocks.")})
    for i in blocks:
        d = f"transformer_blocks.{i}"
        out += [
            (f"double_blocks.{i}.img_attn.qkv", f"double_blocks_{i}_img_attn_qkv",
             tuple(f"{d}.{m}" for m in DOUBLE_IMG)),
            (f"double_blocks.{i}.txt_attn.qkv", f"double_blocks_{i}_txt_attn_qkv",
             tuple(f"{d}.{m}" for m in DOUBLE_TXT)),
            (f"double_blocks.{i}.img_attn.proj", f"double_blocks_{i}_img_attn_proj",
             (f"{d}.attn.to_out.0",)),
            (f"double_blocks.{i}.txt_attn.proj", f"double_blocks_{i}_txt_attn_proj",
             (f"{d}.attn.to_add_out",)),
        ]  # fmt: skip
    singles = sorted({n.split(".")[1] for n in layers if n.startswith("single_transformer_")})
    for i in singles:
        s = f"single_transformer_blocks.{i}"
        if f"{s}.attn.to_qkv_mlp_proj" in layers:
            linear1, linear2 = (f"{s}.attn.to_qkv_mlp_proj",), (f"{s}.attn.to_out",)
        else:
            linear1, linear2 = tuple(f"{s}.{m}" for m in FLUX1_SINGLE), (f"{s}.proj_out",)
        out += [
            (f"single_blocks.{i}.linear1", f"single_blocks_{i}_linear1", linear1),
            (f"single_blocks.{i}.linear2", f"single_blocks_{i}_linear2", linear2),
        ]
    return out


def kohya_tensors(layers: Layers) -> tuple[dict[str, Any], Layers]:
    """sd-scripts' FLUX keys, fused layers block-diagonal, alpha = rank (scale 1)."""
    import torch

    out = {}
    for _bfl, kohya, names in _fused_names(layers):
        down, up = _block_diag(layers, names)
        out[f"lora_unet_{kohya}.lora_down.weight"] = down.clone()
        out[f"lora_unet_{kohya}.lora_up.weight"] = up.clone()
        out[f"lora_unet_{kohya}.alpha"] = torch.tensor(float(down.shape[0]))
    return out, layers


def bfl_tensors(layers: Layers, names: str = "lora_A") -> tuple[dict[str, Any], Layers]:
    """BFL's original names under ``diffusion_model.``; fused layers as one shared A and
    stacked B. ``names``: ``lora_A`` (peft's, as BFL and ai-toolkit write) or
    ``lora_down`` (as ComfyUI saves)."""
    down_name, up_name = ("lora_A", "lora_B") if names == "lora_A" else ("lora_down", "lora_up")
    out = {}
    for bfl, _kohya, group in _fused_names(layers):
        down, up = _stacked(layers, group)
        out[f"diffusion_model.{bfl}.{down_name}.weight"] = down.clone()
        out[f"diffusion_model.{bfl}.{up_name}.weight"] = up.clone()
    return out, layers


def xlabs_tensors(layers: Layers) -> tuple[dict[str, Any], Layers]:
    """XLabs' FLUX.1 keys: its processors adapt q/k/v and the output projections, not a
    single block's MLP input (dropped from the stated layers)."""
    out: dict[str, Any] = {}
    stated: Layers = {}
    for bfl, _kohya, group in _fused_names(layers):
        parts = bfl.split(".")
        block = f"{parts[0]}.{parts[1]}"
        if parts[0] == "double_blocks":
            lora = {"img_attn.qkv": "qkv_lora1", "txt_attn.qkv": "qkv_lora2",
                    "img_attn.proj": "proj_lora1", "txt_attn.proj": "proj_lora2"}[
                ".".join(parts[2:])]  # fmt: skip
        else:
            lora = {"linear1": "qkv_lora", "linear2": "proj_lora"}[parts[2]]
            group = tuple(n for n in group if not n.endswith("proj_mlp"))
        down, up = _stacked(layers, group)
        out[f"{block}.processor.{lora}.down.weight"] = down.clone()
        out[f"{block}.processor.{lora}.up.weight"] = up.clone()
        stated.update({n: layers[n] for n in group})
    return out, stated


WRITERS = {
    "diffusers": diffusers_tensors,
    "kohya": kohya_tensors,
    "xlabs": xlabs_tensors,
    "bfl": bfl_tensors,
    "comfy": lambda layers: bfl_tensors(layers, names="lora_down"),
}


def save(tensors: dict[str, Any], out: Path, metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata=metadata)
    return out
