"""The GPU fast path on CPU: compiled and eager agree, style switches under compile never
recompile (and do switch), every optimisation's off switch, tiled VAE decode.

Compiling uses the ``aot_eager`` backend (dynamo + AOT autograd, no code generation) except
for one inductor test: inductor compiles slowly on 2 cores.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from pipelines.engine import Engine
from pipelines.families import family_of
from pipelines.fast_path import (
    FastPathError,
    FastPathOptions,
    apply_fast_path,
    compiled_modules,
    select_vae_dtype,
)
from pipelines.params import GenerationParams, StyleRef
from pipelines.style_adapters import HOTSWAP_SLOT, StyleLoadError

AOT_EAGER = FastPathOptions(compile="on", compile_backend="aot_eager", vae_tile_min_pixels=0)


def run(engine: Engine, style: StyleRef | None = None, resolution: str = "128px") -> np.ndarray:
    params = GenerationParams.build(
        engine.spec, prompt="a lighthouse", seed=5, steps=2, resolution=resolution, style=style
    )
    return engine.generate([params])[0].images[0].astype(int)


@pytest.fixture(scope="module")
def three_styles(tiny_sd15_loras, catalog, tmp_path_factory) -> list[StyleRef]:
    """Three styles; the third of another rank (8), so the slot's padding is exercised."""
    from styles.random_lora import random_unet_lora

    path_a, path_b = tiny_sd15_loras
    path_c = random_unet_lora(
        catalog.get("tiny-sd15").source / "unet",
        tmp_path_factory.mktemp("rank8") / "style_c.safetensors",
        seed=3,
        rank=8,
    )
    return [
        StyleRef("sty_a", str(path_a)),
        StyleRef("sty_b", str(path_b)),
        StyleRef("sty_c", str(path_c)),
    ]


def unique_graphs() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


@pytest.mark.slow
def test_style_switches_under_compile_never_recompile(catalog, three_styles):
    spec = catalog.get("tiny-sd15")
    eager = Engine.load(spec, device="cpu")
    fast = Engine.load(spec, device="cpu")
    # Warm-up at the one size used here, n=1 only: every new shape compiles on 2 cores.
    report = apply_fast_path(fast, AOT_EAGER, warmup_sizes=[(128, 128)], warmup_batch=False)
    assert report.compiled_modules > 0 and report.warmup_calls == 1
    assert fast.styles.hotswap and HOTSWAP_SLOT in fast.pipe.unet.peft_config

    graphs = unique_graphs()
    a, b, c = three_styles
    order = [None, a, b, c, StyleRef(a.id, a.path, 0.5), a, None]
    images = [run(fast, style) for style in order]
    assert unique_graphs() == graphs, "a style switch recompiled the denoiser"
    assert fast.styles.slot.swaps >= 5 and fast.styles.slot.rebuilds == 0

    # Every image matches eager mode (ordinary named adapters) for the same style.
    for style, image in zip(order, images, strict=True):
        assert np.abs(image - run(eager, style)).max() <= 2, style
    # Hotswap swaps: each style differs from the base and from the others ...
    base, with_a, with_b, with_c, half_a, again_a, base_again = images
    for one, other in [(base, with_a), (with_a, with_b), (with_b, with_c), (with_a, half_a)]:
        assert np.abs(one - other).mean() > 1
    # ... and coming back gives the same image again.
    assert np.array_equal(with_a, again_a) and np.array_equal(base, base_again)


def random_transformer_lora(transformer, out_file, seed: int, rank: int = 4):
    """A diffusers-layout LoRA (``transformer.….lora_A/B.weight``) on every attention
    projection of a FLUX transformer, random and non-zero."""
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, module in transformer.named_modules():
        if name.endswith(("attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0")):
            down = torch.randn(rank, module.in_features, generator=generator)
            tensors[f"transformer.{name}.lora_A.weight"] = down
            up = torch.randn(module.out_features, rank, generator=generator)
            tensors[f"transformer.{name}.lora_B.weight"] = up
    save_file(tensors, str(out_file))
    return out_file


@pytest.mark.slow
def test_flux_style_switches_under_compile_never_recompile(catalog, tmp_path):
    """FLUX's hotswap slot is on its transformer: with the blocks compiled, switching
    styles, strengths and the base model adds no graph, and each switch changes the image
    (coming back gives the same pixels)."""
    fast = Engine.load(catalog.get("tiny-flux1"), device="cpu")
    report = apply_fast_path(fast, AOT_EAGER, warmup_sizes=[(128, 128)], warmup_batch=False)
    assert report.compiled_modules > 0 and fast.styles.hotswap
    assert HOTSWAP_SLOT in fast.pipe.transformer.peft_config
    a, b = (
        StyleRef(f"flux_{seed}", str(random_transformer_lora(
            fast.pipe.transformer, tmp_path / f"flux_{seed}.safetensors", seed
        )))
        for seed in (1, 2)
    )  # fmt: skip
    graphs = unique_graphs()
    order = [None, a, b, StyleRef(a.id, a.path, 0.5), a, None]
    images = [run(fast, style) for style in order]
    assert unique_graphs() == graphs, "a style switch recompiled the transformer"
    assert fast.styles.slot.swaps >= 4 and fast.styles.slot.rebuilds == 0
    base, with_a, with_b, half_a, again_a, base_again = images
    for one, other in [(base, with_a), (with_a, with_b), (with_a, half_a)]:
        assert np.abs(one - other).mean() > 1
    assert np.array_equal(with_a, again_a) and np.array_equal(base, base_again)


@pytest.mark.slow
def test_inductor_compiled_and_eager_agree(catalog):
    spec = catalog.get("tiny-sd15")
    eager = Engine.load(spec, device="cpu")
    options = FastPathOptions(compile="on", vae_tile_min_pixels=0, warmup=False)
    fast = Engine.load(spec, device="cpu", fast_path=options)
    assert compiled_modules(fast.pipe.unet)
    difference = np.abs(run(fast) - run(eager))
    assert difference.max() <= 3 and difference.mean() < 0.5


def test_compile_off_and_auto_on_cpu_compile_nothing(catalog):
    spec = catalog.get("tiny-sd15")
    for options in (FastPathOptions(), FastPathOptions(compile="off"), FastPathOptions.off()):
        engine = Engine.load(spec, device="cpu", fast_path=replace(options, warmup=False))
        assert compiled_modules(engine.pipe.unet) == []
        assert not engine.styles.hotswap  # eager: ordinary named adapters
        assert "compile" in engine.fast_path_report.skipped


@pytest.mark.slow
def test_fused_qkv_is_refused_with_styles_and_refuses_styles(catalog, tiny_sd15_loras):
    spec = catalog.get("tiny-sd15")
    style = StyleRef("sty_a", str(tiny_sd15_loras[0]))
    styled = Engine.load(spec, device="cpu")
    run(styled, style)
    with pytest.raises(FastPathError, match="fused_qkv"):
        apply_fast_path(styled, FastPathOptions(fused_qkv=True, warmup=False))

    fused = Engine.load(spec, device="cpu")
    plain = run(fused)
    report = apply_fast_path(fused, FastPathOptions(fused_qkv=True, warmup=False))
    assert "fused_qkv" in report.applied
    assert np.abs(run(fused) - plain).max() <= 2  # same model, fused matmuls
    with pytest.raises(StyleLoadError, match="KILN_FUSED_QKV"):
        run(fused, style)
    assert fused.styles.loaded == []


@pytest.mark.slow
def test_tiled_vae_decode_engages_above_the_threshold(catalog):
    spec = catalog.get("tiny-sd15")
    engine = Engine.load(spec, device="cpu")
    untiled = run(engine, resolution="256px")
    vae = engine.pipe.vae
    tiled_calls: list[tuple[int, ...]] = []
    original = vae.tiled_decode

    def counting_tiled_decode(z, *args, **kwargs):
        tiled_calls.append(tuple(z.shape))
        return original(z, *args, **kwargs)

    vae.tiled_decode = counting_tiled_decode
    apply_fast_path(engine, FastPathOptions(vae_tile_min_pixels=128 * 128, warmup=False))
    run(engine, resolution="128px")  # 128x128 is not above the threshold
    assert tiled_calls == []
    tiled = run(engine, resolution="256px")
    assert len(tiled_calls) == 1
    assert not vae.use_tiling  # decided per call
    difference = np.abs(tiled - untiled)
    assert difference.mean() < 6 and difference.max() <= 96  # tile seams are blended


def test_vae_dtype_policy():
    sd15, sdxl = family_of("sd15"), family_of("sdxl")
    assert select_vae_dtype(sdxl, torch.bfloat16) == torch.bfloat16
    assert select_vae_dtype(sdxl, torch.float16) == torch.float32  # overflows in fp16
    assert select_vae_dtype(sd15, torch.float16) == torch.float16
    assert select_vae_dtype(sd15, torch.bfloat16, "fp32") == torch.float32


def test_options_are_checked():
    with pytest.raises(ValueError, match="compile"):
        FastPathOptions(compile="sometimes")
    with pytest.raises(ValueError, match="cuda_graphs"):
        FastPathOptions(cuda_graphs=True, compile_mode="max-autotune")
    assert FastPathOptions(cuda_graphs=True).mode == "reduce-overhead"
    assert FastPathOptions().compiles_on("cuda") and not FastPathOptions().compiles_on("cpu")


def test_fp8_off_cuda_is_a_clear_error(catalog):
    engine = Engine.load(catalog.get("tiny-sd15"), device="cpu")
    with pytest.raises(FastPathError, match="fp8"):
        apply_fast_path(engine, FastPathOptions(fp8=True, warmup=False))


def test_settings_build_the_options_from_kiln_env_names():
    from serving.core.settings import Settings, SettingsError

    env = {
        "KILN_COMPILE": "on",
        "KILN_COMPILE_BACKEND": "aot_eager",
        "KILN_CUDA_GRAPHS": "1",
        "KILN_FUSED_QKV": "yes",
        "KILN_CHANNELS_LAST": "true",
        "KILN_VAE_TILE_MIN_PIXELS": "0",
        "KILN_VAE_DTYPE": "fp32",
        "KILN_FA3": "off",
        "KILN_FP8": "on",
        "KILN_WARMUP": "0",
        "KILN_STYLE_MAX_RANK": "32",
    }
    options = Settings.from_env(env).fast_path()
    assert options == FastPathOptions(
        compile="on",
        compile_backend="aot_eager",
        cuda_graphs=True,
        fused_qkv=True,
        channels_last=True,
        vae_tile_min_pixels=0,
        vae_dtype="fp32",
        fa3=False,
        fp8=True,
        warmup=False,
        lora_hotswap_rank=32,
    )
    assert Settings.from_env({}).fast_path() == FastPathOptions()
    with pytest.raises(SettingsError, match="KILN_COMPILE"):
        Settings.from_env({"KILN_COMPILE": "always"})
    with pytest.raises(SettingsError, match="KILN_VAE_DTYPE"):
        Settings.from_env({"KILN_VAE_DTYPE": "fp8"})


def test_an_instruct_model_compiles_but_warms_up_on_first_requests(catalog):
    options = FastPathOptions(compile="on", compile_backend="aot_eager")
    engine = Engine.load(catalog.get("tiny-instruct"), device="cpu", fast_path=options)
    report = engine.fast_path_report
    assert report.compiled_modules > 0 and report.warmup_calls == 0
    assert "instruct" in report.skipped["warmup"]


@pytest.fixture(scope="module")
def text_encoder_style(catalog, tmp_path_factory) -> StyleRef:
    """A style with LoRA layers on both the UNet and the text encoder (tiny-sd15)."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from transformers import CLIPTextModel

    source = catalog.get("tiny-sd15").source
    torch.manual_seed(7)
    unet = UNet2DConditionModel.from_pretrained(source / "unet")
    unet.add_adapter(
        LoraConfig(r=2, lora_alpha=4, init_lora_weights=False, target_modules=["to_q", "to_v"])
    )
    encoder = CLIPTextModel.from_pretrained(source / "text_encoder")
    targets = ["q_proj", "k_proj", "v_proj", "out_proj"]
    encoder.add_adapter(LoraConfig(r=4, init_lora_weights=False, target_modules=targets))
    out = tmp_path_factory.mktemp("te_style")
    StableDiffusionPipeline.save_lora_weights(
        out,
        unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(unet)),
        text_encoder_lora_layers=convert_state_dict_to_diffusers(
            get_peft_model_state_dict(encoder)
        ),
        weight_name="style_te.safetensors",
    )
    return StyleRef("sty_te", str(out / "style_te.safetensors"))


@pytest.mark.slow
def test_hotswap_slot_matches_named_adapters(catalog, three_styles, text_encoder_style):
    """The slot without compiling: normalised states (rank padding, alpha, strength) and
    text-encoder adapters give the images ordinary named adapters give."""
    spec = catalog.get("tiny-sd15")
    eager = Engine.load(spec, device="cpu")
    swapped = Engine.load(spec, device="cpu")
    swapped.styles.enable_hotswap(16)
    te = text_encoder_style
    order = [te, three_styles[2], None, StyleRef(te.id, te.path, 0.6), three_styles[0], te]
    for style in order:
        assert np.abs(run(swapped, style) - run(eager, style)).max() <= 2, style
    assert swapped.styles.slot.rebuilds == 0
    assert "sty_te" in swapped.pipe.text_encoder.peft_config  # an ordinary adapter there
    assert HOTSWAP_SLOT not in getattr(swapped.pipe.text_encoder, "peft_config", {})
    with pytest.raises(RuntimeError, match="before the first style"):
        swapped.styles.enable_hotswap(16)


@pytest.mark.slow
def test_a_style_above_the_slot_rank_is_refused(catalog, three_styles):
    engine = Engine.load(catalog.get("tiny-sd15"), device="cpu")
    engine.styles.enable_hotswap(4)  # style C has rank 8
    with pytest.raises(StyleLoadError, match="rank 8 is above"):
        run(engine, three_styles[2])
    assert engine.styles.loaded == []
    run(engine, three_styles[0])  # rank 4 fits


@pytest.mark.gpu
def test_on_cuda_the_default_fast_path_compiles_and_swaps_styles(catalog, three_styles):
    """As a GPU replica runs it: inductor by block, the style slot, no recompiles."""
    spec = catalog.get("tiny-sd15")
    eager = Engine.load(spec, device="cuda")
    fast = Engine.load(spec, device="cuda")
    report = apply_fast_path(fast, FastPathOptions(), warmup_sizes=[(128, 128)])
    assert "compile" not in report.skipped and fast.styles.hotswap
    graphs = unique_graphs()
    order = [None, *three_styles, StyleRef(three_styles[0].id, three_styles[0].path, 0.5)]
    images = [run(fast, style) for style in order]
    assert unique_graphs() == graphs
    for style, image in zip(order, images, strict=True):
        assert np.abs(image - run(eager, style)).mean() < 4, style  # bf16 kernels differ
    assert np.abs(images[0] - images[1]).mean() > 1
