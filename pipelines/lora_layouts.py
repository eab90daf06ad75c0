"""A LoRA file's tensors as diffusers keys, read exactly as the family's own loader reads
them (``<Pipeline>.lora_state_dict``), with two Kiln readings where diffusers 0.42.1's
FLUX.1 loader would misread a file. Import (``styles.lora_fit``) and serving
(``pipelines.style_adapters``) both read files through here, so what was checked is
what loads.

    state = lora_state(FluxPipeline, tensors, widths=linear_widths(transformer))
    pipe.load_lora_weights(lora_source(pipe, path), adapter_name="sty_…")

The layouts and who reads them:

- diffusers/peft (``transformer.…lora_A.weight``; ai-toolkit writes these for FLUX.1),
  kohya/sd-scripts (``lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight``,
  ``lora_unet_single_blocks_0_linear1…``), XLabs
  (``double_blocks.0.processor.qkv_lora1.down.weight``) and BFL's original names with
  ComfyUI's ``diffusion_model.`` prefix and kohya's ``lora_down``/``lora_up``: diffusers'
  converters (``FluxLoraLoaderMixin``/``Flux2LoraLoaderMixin.lora_state_dict``).
- FLUX.2's BFL/ai-toolkit names (``diffusion_model.double_blocks.0.img_attn.qkv.lora_A``)
  and its kohya names: diffusers' FLUX.2 converters, which read widths from the tensors.

Decisions, for FLUX.1 only (``FluxLoraLoaderMixin``), each with its reason:

- diffusers' kohya converter splits a single block's fused ``linear1`` (q, k, v, MLP)
  with the widths fixed at FLUX.1's full size, ``dims=[3072, 3072, 3072, 12288]``, and
  asserts they add up: a narrower model (the tiny test model, a pruned one) cannot load
  a kohya or BFL file at all. Kiln reads the widths from the model (its ``to_q`` and
  ``proj_mlp`` out-features), checks the fused matrix against them (a misfit names the
  layer), zero-pads each piece of the up matrix to its full-width slot, lets diffusers'
  own converter run (its alpha scaling, its sparse/dense split), and cuts each split's
  ``lora_B`` back to the model's width. Zero rows change neither the sparse test nor a
  split, so this is diffusers' conversion at any width; at full width nothing is padded
  and the converter runs on the file as it is (tests/styles/test_flux_layouts.py).
- BFL's own names with peft's ``lora_A``/``lora_B`` (BFL and ai-toolkit exports; bare
  or under ``diffusion_model.``) and bare BFL names with ``lora_down``/``lora_up`` fall
  through diffusers' FLUX.1 loader without a single layer loaded (it only converts
  ``diffusion_model.``-prefixed kohya names). Kiln renames them to that form — the same
  matrices, ``lora_A`` is ``lora_down`` — so diffusers' converter reads them.

And for FLUX.2 (``Flux2LoraLoaderMixin``):

- BFL names with ComfyUI's ``lora_down``/``lora_up`` under ``diffusion_model.`` send
  diffusers' FLUX.2 loader down its kohya branch, which reads ``lora_unet_…`` names only
  and drops the rest with a warning: not a layer would load. Kiln renames them to peft's
  ``lora_A``/``lora_B``, which its BFL/ai-toolkit converter reads (it does the same
  rename itself once there).
- That kohya converter drops any layer it has no mapping for with a warning; Kiln
  refuses such a file naming the layer instead of serving part of it.

A file read by Kiln is handed to ``load_lora_weights`` as the converted state dict (the
kohya converter folds alpha into the weights, so nothing is lost); every other file is
loaded from its path, as diffusers reads it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# diffusers' kohya FLUX.1 converter's fixed split of a single block's linear1.
FULL_WIDTH = 3072
FULL_MLP = 12288
# BFL's module roots (the original FLUX.1 transformer), under ``diffusion_model.`` or bare.
BFL_PREFIX = "diffusion_model."
BFL_ROOTS = (
    "double_blocks.",
    "single_blocks.",
    "img_in.",
    "txt_in.",
    "time_in.",
    "vector_in.",
    "guidance_in.",
    "final_layer.",
)
_LINEAR1_UP = re.compile(
    r"^(?:lora_unet_single_blocks_|diffusion_model\.single_blocks\.)(\d+)[._]linear1\.lora_up\.weight$"
)


def linear_widths(model: Any) -> dict[str, int]:
    """Module name -> out-features of every Linear layer of ``model`` (meta device is
    fine; a layer wrapped by peft's LoRA counts under its own name)."""
    import torch

    return {
        name.removesuffix(".base_layer"): module.out_features
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    }


def reads_flux1(pipeline_cls: Any) -> bool:
    """Whether ``pipeline_cls`` loads LoRAs through diffusers' FLUX.1 loader."""
    from diffusers.loaders.lora_pipeline import FluxLoraLoaderMixin

    return isinstance(pipeline_cls, type) and issubclass(pipeline_cls, FluxLoraLoaderMixin)


def reads_flux2(pipeline_cls: Any) -> bool:
    """Whether ``pipeline_cls`` loads LoRAs through diffusers' FLUX.2 loader."""
    from diffusers.loaders.lora_pipeline import Flux2LoraLoaderMixin

    return isinstance(pipeline_cls, type) and issubclass(pipeline_cls, Flux2LoraLoaderMixin)


def kiln_state(
    pipeline_cls: Any, tensors: Mapping[str, Any], widths: Mapping[str, int]
) -> dict[str, Any] | None:
    """The file in diffusers keys where Kiln's reading is needed (module docstring),
    else None: diffusers reads it as it is."""
    if reads_flux1(pipeline_cls):
        return flux1_state(tensors, widths)
    if reads_flux2(pipeline_cls):
        renamed = _comfy_as_peft(tensors)
        if renamed is not None:
            return pipeline_cls.lora_state_dict(renamed, return_lora_metadata=True)[0]
    return None


def lora_state(
    pipeline_cls: Any,
    tensors: Mapping[str, Any],
    *,
    denoiser_config: Any = None,
    widths: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The file's layers in diffusers keys (``transformer.…``, ``unet.…``,
    ``text_encoder.…``), as ``pipeline_cls.load_lora_weights`` reads them.
    ``denoiser_config``: for loaders that map block numbers by it (SDXL's); ``widths``:
    the denoiser's ``linear_widths`` (FLUX.1). Raises ValueError, KeyError, IndexError or
    AssertionError when the converter cannot read the file."""
    kiln = kiln_state(pipeline_cls, tensors, widths or {})
    if kiln is not None:
        return kiln
    kwargs = {"unet_config": denoiser_config} if denoiser_config is not None else {}
    source = dict(tensors)  # the kohya converters take what they read out of it
    out = pipeline_cls.lora_state_dict(source, return_lora_metadata=True, **kwargs)
    if reads_flux2(pipeline_cls):
        unread = sorted(k for k in source if k.endswith(".lora_down.weight"))
        if unread:
            raise ValueError(
                f"{unread[0]}: diffusers' FLUX.2 kohya converter has no mapping for this "
                f"layer ({len(unread)} such), so it would not load"
            )
    return out[0]


def lora_source(pipe: Any, path: str) -> str | dict[str, Any]:
    """What ``pipe.load_lora_weights`` is given for the file at ``path``: the path, or the
    state dict Kiln read where diffusers' FLUX.1 loader would misread the file."""
    if not (reads_flux1(type(pipe)) or reads_flux2(type(pipe))):
        return path
    from safetensors.torch import load_file

    kiln = kiln_state(type(pipe), load_file(path), linear_widths(pipe.transformer))
    return path if kiln is None else kiln


def flux1_state(tensors: Mapping[str, Any], widths: Mapping[str, int]) -> dict[str, Any] | None:
    """A FLUX.1 file in diffusers keys where Kiln's reading is needed (see the module
    docstring), else None (diffusers reads it as it is)."""
    from diffusers.loaders.lora_pipeline import FluxLoraLoaderMixin

    renamed = _bfl_as_comfy(tensors)
    source = dict(tensors) if renamed is None else renamed
    cuts = _pad_linear1(source, widths)
    if renamed is None and not cuts:
        return None
    state, _alphas = FluxLoraLoaderMixin.lora_state_dict(source, return_alphas=True)
    for key, rows in cuts.items():
        if key in state:
            state[key] = state[key][:rows].contiguous()
    return state


def _bfl_as_comfy(tensors: Mapping[str, Any]) -> dict[str, Any] | None:
    """BFL names diffusers' FLUX.1 loader would skip, renamed to the
    ``diffusion_model.…lora_down`` form its converter reads; None when there are none."""
    out: dict[str, Any] = {}
    changed = False
    for key, value in tensors.items():
        bare = key.removeprefix(BFL_PREFIX)
        is_bfl = bare.startswith(BFL_ROOTS) and ".processor." not in bare  # XLabs: its own
        if is_bfl and (key == bare or ".lora_A." in bare or ".lora_B." in bare):
            bare = bare.replace(".lora_A.", ".lora_down.").replace(".lora_B.", ".lora_up.")
            out[BFL_PREFIX + bare] = value
            changed = True
        else:
            out[key] = value
    return out if changed else None


def _comfy_as_peft(tensors: Mapping[str, Any]) -> dict[str, Any] | None:
    """``diffusion_model.…lora_down``/``lora_up`` renamed to ``lora_A``/``lora_B`` (FLUX.2);
    None when the file has no such keys."""
    if not any(k.startswith(BFL_PREFIX) and ".lora_down." in k for k in tensors):
        return None
    return {
        (k.replace(".lora_down.", ".lora_A.").replace(".lora_up.", ".lora_B."))
        if k.startswith(BFL_PREFIX)
        else k: v
        for k, v in tensors.items()
    }


def _pad_linear1(tensors: dict[str, Any], widths: Mapping[str, int]) -> dict[str, int]:
    """Check every single block's fused ``linear1`` up matrix against the model's widths
    and pad a narrower one, in place, to diffusers' full-width split; returns the
    converted ``lora_B`` keys to cut back, with their rows."""
    cuts: dict[str, int] = {}
    for key in list(tensors):
        match = _LINEAR1_UP.match(key)
        if match is None:
            continue
        block = f"single_transformer_blocks.{match[1]}"
        inner, mlp = widths.get(f"{block}.attn.to_q"), widths.get(f"{block}.proj_mlp")
        if inner is None or mlp is None:
            raise ValueError(f"{key}: the model has no {block} (q, k, v and MLP projections)")
        up = tensors[key]
        if up.ndim != 2 or up.shape[0] != 3 * inner + mlp:
            raise ValueError(
                f"{key}: the fused q, k, v and MLP projection is {3 * inner + mlp} out "
                f"({inner} x 3 + {mlp}) in the model, {tuple(up.shape)} in the LoRA"
            )
        if (inner, mlp) == (FULL_WIDTH, FULL_MLP):
            continue
        if inner > FULL_WIDTH or mlp > FULL_MLP:
            raise ValueError(f"{key}: wider than FLUX.1 ({inner}, {mlp}): not a FLUX.1 model")
        padded = up.new_zeros((3 * FULL_WIDTH + FULL_MLP, up.shape[1]))
        pieces = ((0, inner), (inner, inner), (2 * inner, inner), (3 * inner, mlp))
        for slot, (start, rows) in enumerate(pieces):
            padded[slot * FULL_WIDTH : slot * FULL_WIDTH + rows] = up[start : start + rows]
        tensors[key] = padded
        target = f"transformer.{block}"
        for name in ("attn.to_q", "attn.to_k", "attn.to_v"):
            cuts[f"{target}.{name}.lora_B.weight"] = inner
        cuts[f"{target}.proj_mlp.lora_B.weight"] = mlp
    return cuts
