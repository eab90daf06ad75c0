"""FLUX LoRA files in every layout people have, on the tiny FLUX.1 and FLUX.2 [klein]
models: each layout's own key names, written from one set of matrices
(tests/styles/flux_lora_makers.py), imported through the real checks, loaded through the
serving path (``StyleAdapters``) and run: the pixels change, and they are the pixels of
the diffusers-layout file of the same layers. Files of another family or layout that do
not fit are refused naming the layer (and the family they fit)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from flux_lora_makers import (
    WRITERS,
    diffusers_tensors,
    extra_layers,
    flux_layers,
    kohya_tensors,
    save,
)

from pipelines.families import load_pipeline
from pipelines.lora_layouts import FULL_MLP, FULL_WIDTH, lora_state
from pipelines.params import StyleRef
from pipelines.style_adapters import HOTSWAP_SLOT, StyleAdapters
from styles.lora_file import DEFAULT_MAX_BYTES, StyleFileError
from styles.lora_fit import inspect_lora

LIMITS = {"max_bytes": DEFAULT_MAX_BYTES, "max_rank": 64}
MODELS = {"flux1": "tiny-flux1", "flux2": "tiny-flux2-klein"}
# The layouts each family's files come in (XLabs made FLUX.1 LoRAs only; ComfyUI saves
# BFL names with kohya's lora_down/lora_up).
LAYOUTS = {
    "flux1": ("diffusers", "kohya", "xlabs", "bfl", "comfy"),
    "flux2": ("diffusers", "kohya", "bfl", "comfy"),
}
RECORDED = {"diffusers": "diffusers", "kohya": "kohya", "xlabs": "xlabs", "bfl": "bfl"}
RECORDED["comfy"] = "bfl"


@pytest.fixture(scope="module")
def pipes(catalog):
    """family -> (its tiny pipeline, its StyleAdapters), loaded once for the module."""
    out = {}
    for family in MODELS:
        pipe = load_pipeline(catalog.get(MODELS[family]), "cpu", torch.float32)
        pipe.set_progress_bar_config(disable=True)
        out[family] = (pipe, StyleAdapters(pipe, capacity=16))
    return out


@functools.cache
def _prompt(pipe) -> dict:
    """The prompt's embeddings, once per pipeline (Kiln's styles leave text encoders be)."""
    with torch.no_grad():
        embeds = pipe.encode_prompt(prompt="a kiln at dusk", max_sequence_length=32)
    if len(embeds) == 3:  # FLUX.1: T5 sequence, CLIP pooled, text ids
        return {"prompt_embeds": embeds[0], "pooled_prompt_embeds": embeds[1]}
    return {"prompt_embeds": embeds[0]}


def generate(pipe, adapters: StyleAdapters, style: StyleRef | None) -> np.ndarray:
    adapters.activate(style)
    out = pipe(
        **_prompt(pipe),
        height=64,
        width=64,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(7),
        output_type="np",
    )
    return out.images[0]


def inspect(path: Path, catalog, model: str):
    installed = [spec for spec in catalog if spec.kind == "base"]
    return inspect_lora(path, catalog.get(model), **LIMITS, installed=installed)


@pytest.mark.parametrize(
    ("family", "layout"), [(f, layout) for f, layouts in LAYOUTS.items() for layout in layouts]
)
def test_each_layout_imports_and_changes_the_image_as_its_diffusers_twin(
    family, layout, catalog, pipes, tmp_path
):
    pipe, adapters = pipes[family]
    layers = flux_layers(pipe.transformer, seed=3)
    tensors, stated = WRITERS[layout](layers)
    path = save(tensors, tmp_path / f"{layout}.safetensors")
    twin = save(diffusers_tensors(stated)[0], tmp_path / "twin.safetensors")

    info = inspect(path, catalog, MODELS[family])
    assert (info.family, info.layout, info.rank) == (family, RECORDED[layout], 4)
    assert info.denoiser_layers == len(stated) and info.text_encoder_layers == ()

    base = generate(pipe, adapters, None)
    styled = generate(pipe, adapters, StyleRef(f"{family}-{layout}", str(path)))
    assert np.abs(styled - base).mean() > 0.01  # the style changed the image
    # ... exactly as the same layers in diffusers' own layout do.
    same = generate(pipe, adapters, StyleRef(f"{family}-{layout}-twin", str(twin)))
    np.testing.assert_allclose(styled, same, atol=2e-4)
    assert np.array_equal(generate(pipe, adapters, None), base)  # and off again


def test_ai_toolkit_flux1_files_adapt_more_than_attention(catalog, pipes, tmp_path):
    """ai-toolkit writes diffusers keys for FLUX.1, for every linear layer of a block:
    the feed-forward and modulation layers load and act too."""
    pipe, adapters = pipes["flux1"]
    ffn = extra_layers(pipe.transformer, seed=4)
    both = {**flux_layers(pipe.transformer, seed=4), **ffn}
    path = save(
        diffusers_tensors(both)[0],
        tmp_path / "ait.safetensors",
        metadata={"software": "ai-toolkit", "format": "pt"},
    )
    attention_only = save(
        diffusers_tensors(flux_layers(pipe.transformer, seed=4))[0], tmp_path / "a.safetensors"
    )
    info = inspect(path, catalog, "tiny-flux1")
    assert (info.layout, info.denoiser_layers) == ("diffusers", len(both))
    full = generate(pipe, adapters, StyleRef("ait", str(path)))
    partial = generate(pipe, adapters, StyleRef("ait-attention", str(attention_only)))
    assert np.abs(full - partial).mean() > 0.005


def test_kilns_fused_split_is_diffusers_at_full_width(catalog, pipes):
    """diffusers' kohya FLUX.1 converter splits a single block's linear1 at the full
    width (3072, 12288). A tiny file read by Kiln gives exactly what diffusers gives for
    the same matrices placed in a full-width file (zero rows elsewhere), cut back."""
    from diffusers import FluxPipeline

    from pipelines.lora_layouts import linear_widths

    pipe, _ = pipes["flux1"]
    widths = linear_widths(pipe.transformer)
    inner, mlp = (
        widths["single_transformer_blocks.0.attn.to_q"],
        widths["single_transformer_blocks.0.proj_mlp"],
    )
    for sparse in (True, False):
        layers = flux_layers(pipe.transformer, seed=5)
        tensors, _ = kohya_tensors(layers)
        key = "lora_unet_single_blocks_0_linear1.lora_up.weight"
        if not sparse:  # a dense fused up matrix: diffusers copies down to each split
            tensors[key] = torch.randn(tensors[key].shape) * 0.1
        kiln = lora_state(FluxPipeline, tensors, widths=widths)

        full = dict(tensors)
        up = tensors[key]
        wide = torch.zeros(3 * FULL_WIDTH + FULL_MLP, up.shape[1])
        for slot, (start, rows) in enumerate(
            ((0, inner), (inner, inner), (2 * inner, inner), (3 * inner, mlp))
        ):
            wide[slot * FULL_WIDTH : slot * FULL_WIDTH + rows] = up[start : start + rows]
        full[key] = wide
        full_widths = {**widths, "single_transformer_blocks.0.attn.to_q": FULL_WIDTH}
        full_widths["single_transformer_blocks.0.proj_mlp"] = FULL_MLP
        theirs = lora_state(FluxPipeline, full, widths=full_widths)  # diffusers alone
        assert set(kiln) == set(theirs)
        for name, value in kiln.items():
            rows = value.shape[0]
            assert torch.equal(value, theirs[name][:rows]), name
            if name.endswith("lora_B.weight") and ".single_" in name:
                assert not theirs[name][rows:].any()  # only zeros were cut


@pytest.mark.parametrize("family", list(MODELS))
def test_flux_styles_hot_swap_into_the_transformers_slot_as_named_adapters(
    family, catalog, pipes, tmp_path
):
    """The compiled fast path's style slot (``enable_hotswap``) lives on the family's
    denoiser: FLUX's transformer. Without compiling, switching styles, strengths and the
    base model through the slot gives the pixels of ordinary named adapters."""
    eager_pipe, eager = pipes[family]
    pipe = load_pipeline(catalog.get(MODELS[family]), "cpu", torch.float32)
    pipe.set_progress_bar_config(disable=True)
    swapped = StyleAdapters(pipe, capacity=4, denoiser="transformer")
    swapped.enable_hotswap(8)
    files = []
    for seed, layout in ((11, "diffusers"), (12, "kohya")):
        tensors, _ = WRITERS[layout](flux_layers(pipe.transformer, seed=seed))
        path = save(tensors, tmp_path / f"{layout}.safetensors")
        files.append(StyleRef(f"hot-{family}-{layout}", str(path)))
    first, second = files
    order = [first, None, StyleRef(first.id, first.path, 0.5), second, first]
    images = []
    for style in order:
        ours, theirs = generate(pipe, swapped, style), generate(eager_pipe, eager, style)
        np.testing.assert_allclose(ours, theirs, atol=2e-3, err_msg=str(style))
        images.append(ours)
    assert np.abs(images[0] - images[1]).mean() > 0.01  # a style did act
    assert swapped.slot.swaps >= 3 and HOTSWAP_SLOT in pipe.transformer.peft_config
    assert not hasattr(pipe, "unet")


def _te1_layers(text_encoder, seed: int) -> dict:
    """kohya's ``lora_te1_`` layers on every attention projection of FLUX.1's CLIP-L."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for i, layer in enumerate(text_encoder.encoder.layers):
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            linear = getattr(layer.self_attn, proj)
            key = f"lora_te1_text_model_encoder_layers_{i}_self_attn_{proj}"
            down = torch.randn(4, linear.in_features, generator=generator) * 0.3
            out[f"{key}.lora_down.weight"] = down
            out[f"{key}.lora_up.weight"] = torch.randn(linear.out_features, 4, generator=generator)
            out[f"{key}.alpha"] = torch.tensor(4.0)
    return out


def test_a_kohya_flux1_file_with_clip_layers_loads_them_too(catalog, tmp_path):
    """sd-scripts' FLUX.1 files may adapt CLIP-L (``lora_te1_``): imported with the text
    encoder named, loaded into it, acting on the prompt (encoded after the style is
    selected, as the engine does), and off again with the base model; the same through
    the hotswap slot, where text-encoder layers stay a named adapter."""
    pipe = load_pipeline(catalog.get("tiny-flux1"), "cpu", torch.float32)
    pipe.set_progress_bar_config(disable=True)
    transformer_only, _ = kohya_tensors(flux_layers(pipe.transformer, seed=6))
    with_clip = {**transformer_only, **_te1_layers(pipe.text_encoder, seed=7)}
    plain = save(transformer_only, tmp_path / "plain.safetensors")
    path = save(with_clip, tmp_path / "te1.safetensors")
    info = inspect(path, catalog, "tiny-flux1")
    assert (info.layout, info.text_encoder_layers) == ("kohya", ("text_encoder",))

    def generate_encoded(adapters: StyleAdapters, style: StyleRef | None) -> np.ndarray:
        adapters.activate(style)
        with torch.no_grad():
            embeds = pipe.encode_prompt(prompt="a kiln at dusk", max_sequence_length=32)
        out = pipe(
            prompt_embeds=embeds[0], pooled_prompt_embeds=embeds[1], height=64, width=64,
            num_inference_steps=2, generator=torch.Generator().manual_seed(7), output_type="np",
        )  # fmt: skip
        return out.images[0]

    adapters = StyleAdapters(pipe, capacity=4, denoiser="transformer")
    base = generate_encoded(adapters, None)
    clip_styled = generate_encoded(adapters, StyleRef("te1", str(path)))
    transformer_styled = generate_encoded(adapters, StyleRef("plain", str(plain)))
    assert "te1" in pipe.text_encoder.peft_config
    assert np.abs(clip_styled - transformer_styled).mean() > 0.005  # CLIP's layers acted
    np.testing.assert_array_equal(generate_encoded(adapters, None), base)
    for name in ("te1", "plain"):
        adapters.unload(name)
    pipe.enable_lora()  # the first adapters' base-model call disabled LoRA layers

    swapped = StyleAdapters(pipe, capacity=4, denoiser="transformer")
    swapped.enable_hotswap(8)
    hot = generate_encoded(swapped, StyleRef("te1-hot", str(path)))
    np.testing.assert_allclose(hot, clip_styled, atol=2e-3)


# Bad files


def test_an_sd_lora_on_flux_is_refused_naming_the_layer(catalog, lora_files):
    for family in ("sd15", "sdxl"):
        for layout in ("diffusers", "kohya"):
            with pytest.raises(StyleFileError, match="does not fit model 'tiny-flux1'") as info:
                inspect(lora_files[(family, layout)], catalog, "tiny-flux1")
            message = str(info.value)
            assert "unet" in message or "text_encoder" in message  # a layer named
            assert f"it fits the {family} family, not flux1" in message


@pytest.mark.parametrize("layout", ["diffusers", "kohya", "bfl"])
def test_a_flux_lora_on_sdxl_is_refused_and_names_the_family_it_fits(
    layout, catalog, pipes, tmp_path
):
    pipe, _ = pipes["flux1"]
    tensors, _ = WRITERS[layout](flux_layers(pipe.transformer))
    path = save(tensors, tmp_path / "flux1.safetensors")
    with pytest.raises(StyleFileError, match="does not fit model 'tiny-sdxl'") as info:
        inspect(path, catalog, "tiny-sdxl")
    assert "it fits the flux1 family, not sdxl" in str(info.value)


def test_a_lora_of_the_other_flux_family_is_refused_naming_the_layer(catalog, pipes, tmp_path):
    flux2_layers = flux_layers(pipes["flux2"][0].transformer)
    path = save(diffusers_tensors(flux2_layers)[0], tmp_path / "flux2.safetensors")
    with pytest.raises(
        StyleFileError,
        match=r"single_transformer_blocks.0.attn.to_(out|qkv_mlp_proj) is not a module",
    ) as info:
        inspect(path, catalog, "tiny-flux1")
    assert "it fits the flux2 family, not flux1" in str(info.value)

    flux1_layers = flux_layers(pipes["flux1"][0].transformer)
    path = save(WRITERS["xlabs"](flux1_layers)[0], tmp_path / "xlabs.safetensors")
    with pytest.raises(StyleFileError, match="does not fit model 'tiny-flux2-klein'") as info:
        inspect(path, catalog, "tiny-flux2-klein")
    assert "processor" in str(info.value) and "it fits the flux1 family" in str(info.value)


def test_a_fused_layer_of_another_width_is_refused_naming_it(catalog, pipes, tmp_path):
    tensors, _ = kohya_tensors(flux_layers(pipes["flux1"][0].transformer))
    key = "lora_unet_single_blocks_0_linear1.lora_up.weight"
    tensors[key] = torch.zeros(tensors[key].shape[0] + 16, tensors[key].shape[1])
    path = save(tensors, tmp_path / "wide.safetensors")
    with pytest.raises(StyleFileError, match="lora_unet_single_blocks_0_linear1"):
        inspect(path, catalog, "tiny-flux1")


def test_a_flux2_kohya_layer_diffusers_would_drop_is_refused_naming_it(catalog, pipes, tmp_path):
    tensors, _ = kohya_tensors(flux_layers(pipes["flux2"][0].transformer))
    name = "lora_unet_single_stream_modulation_lin"
    tensors[f"{name}.lora_down.weight"] = torch.zeros(4, 32)
    tensors[f"{name}.lora_up.weight"] = torch.zeros(96, 4)
    path = save(tensors, tmp_path / "extra.safetensors")
    with pytest.raises(StyleFileError, match=f"{name}.lora_down.weight: diffusers' FLUX.2"):
        inspect(path, catalog, "tiny-flux2-klein")


def test_text_encoder_layers_are_refused_on_klein(catalog, pipes, tmp_path):
    """[klein]'s text encoder is Qwen3: diffusers' FLUX.2 loader has no reading of kohya's
    CLIP layers, so such a file is refused naming one (FLUX.1 takes them, above)."""
    tensors, _ = kohya_tensors(flux_layers(pipes["flux2"][0].transformer))
    name = "lora_te1_text_model_encoder_layers_0_self_attn_q_proj"
    tensors[f"{name}.lora_down.weight"] = torch.zeros(4, 32)
    tensors[f"{name}.lora_up.weight"] = torch.zeros(32, 4)
    path = save(tensors, tmp_path / "te.safetensors")
    with pytest.raises(StyleFileError, match=f"{name}.lora_down.weight: diffusers' FLUX.2"):
        inspect(path, catalog, "tiny-flux2-klein")


def test_rank_over_the_limit_is_refused(catalog, pipes, tmp_path):
    path = save(
        WRITERS["bfl"](flux_layers(pipes["flux2"][0].transformer))[0], tmp_path / "r.safetensors"
    )
    with pytest.raises(StyleFileError, match="rank 4, over the limit of 2"):
        inspect_lora(path, catalog.get("tiny-flux2-klein"), max_bytes=DEFAULT_MAX_BYTES, max_rank=2)
