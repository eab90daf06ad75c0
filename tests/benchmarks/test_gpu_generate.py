"""benchmarks/gpu_generate.py cannot rot: its functions run here on CPU.

The timed path's smoke run (``--smoke``: tiny models on CPU, the fast path's CPU part and
the style switch with eager adapters) is checked line by line in
test_benchmark_scripts_smoke.py; the compiled paths are tests/pipelines/test_fast_path.py.
Here: the refusal without CUDA, and the full-size path (shipped configs for SD, the
written-out FLUX.1 [dev] and FLUX.2 [klein] 4B configs, FLOP count on the real shapes) on
the meta device, which needs no memory and no compute.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_generate.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("gpu_generate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_generate"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("gpu_generate", None)


def test_full_size_needs_cuda_or_tiny(bench, capsys) -> None:
    assert bench.main(["--device", "cpu"]) == 2
    assert "--tiny" in capsys.readouterr().out


@pytest.mark.slow
def test_full_size_sd15_builds_and_counts_on_meta(bench) -> None:
    pipe = bench.assemble_pipeline("sd15", bench.build_modules("sd15", "meta", torch.bfloat16))
    assert sum(p.numel() for p in pipe.unet.parameters()) == 859_520_964
    assert pipe.unet.dtype == torch.bfloat16
    case = next(c for c in bench.FULL_CASES if c.model == "sd15")
    flops = bench.count_unet_flops(pipe, case)
    # SD 1.5 at 512x512: about 0.8 TFLOP per image per UNet call, 2.5 per VAE decode.
    assert flops.denoiser_call == pytest.approx(1.6065e12, rel=1e-3)
    assert flops.decode == pytest.approx(2.5145e12, rel=1e-3)


# Model -> (its architecture in the script, transformer parameters, one forward at
# 1024x1024 with 512 text tokens). FLUX.1 [dev]: 11.9B, 74.4 TFLOP (the figure);
# [klein] 4B: 3.88B, 34.8 TFLOP.
FLUX_FULL_SIZE = {
    "flux1-dev": ("FLUX1_DEV", 11_901_408_320, 74.38e12),
    "flux2-klein-4b": ("FLUX2_KLEIN_4B", 3_875_544_576, 34.82e12),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FLUX_FULL_SIZE))
def test_full_size_flux_builds_on_meta_and_its_formula_counts_the_forward(bench, name) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    arch_name, parameters, forward = FLUX_FULL_SIZE[name]
    arch = getattr(bench, arch_name)
    pipe = bench.assemble_dit_pipeline(arch, bench.build_dit_modules(arch, "meta", torch.bfloat16))
    transformer = pipe.transformer
    assert sum(p.numel() for p in transformer.parameters()) == parameters
    assert transformer.dtype == torch.bfloat16
    case = next(c for c in bench.FULL_CASES if c.model == name and c.n == 1)
    flops = bench.MODELS[name].count(pipe, case)
    assert flops.denoiser_call == pytest.approx(forward, rel=1e-3)
    # The formula against the counter, on the real shapes (meta: no memory, no compute).
    config, tokens, text = transformer.config, 4096, arch.text_tokens
    kwargs = {
        "hidden_states": torch.zeros(1, tokens, config.in_channels),
        "encoder_hidden_states": torch.zeros(1, text, config.joint_attention_dim),
        "timestep": torch.ones(1),
        "img_ids": torch.zeros(1, tokens, len(config.axes_dims_rope)),
        "txt_ids": torch.zeros(1, text, len(config.axes_dims_rope)),
        "guidance": torch.ones(1) if config.guidance_embeds else None,
    }
    if "pooled_projection_dim" in config:
        kwargs["pooled_projections"] = torch.zeros(1, config.pooled_projection_dim)
    meta = {key: value.to("meta", torch.bfloat16) if isinstance(value, torch.Tensor) else value
            for key, value in kwargs.items()}  # fmt: skip
    with (
        torch.inference_mode(),
        bench.countable_attention(torch.device("meta")),
        FlopCounterMode(display=False) as counter,
    ):
        transformer(**meta)
    assert counter.get_total_flops() == pytest.approx(flops.denoiser_call, rel=5e-3)
    # The floor's other parts: the 1024^2 VAE decode and the prompt encoding.
    assert 5e12 < flops.decode < 20e12
    assert 0 < flops.encode < 0.05 * flops.total(case.steps)


def test_a_model_the_engine_does_not_run_yet_says_what_turns_it_on(bench) -> None:
    import dataclasses

    pending = dataclasses.replace(bench.MODELS["flux1-dev"], family="qwen_image", engine=False)
    assert bench.engine_pending(pending) == "no qwen_image family in pipelines/families yet"
    off = dataclasses.replace(bench.MODELS["flux1-dev"], engine=False)
    assert "set engine=True" in bench.engine_pending(off)
