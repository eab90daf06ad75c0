"""benchmarks/gpu_generate.py cannot rot: its functions run here on CPU.

The timed path's smoke run (``--smoke``: tiny models on CPU, the fast path's CPU part and
the style switch with eager adapters) is checked line by line in
test_benchmark_scripts_smoke.py; the compiled paths are tests/pipelines/test_fast_path.py.
Here: the refusal without CUDA, and the full-size path (shipped configs, FLOP count on the
real shapes) on the meta device, which needs no memory and no compute.
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
    case = next(c for c in bench.FULL_CASES if c.family == "sd15")
    unet_flops, vae_flops = bench.count_flops(pipe, case)
    # SD 1.5 at 512x512: about 0.8 TFLOP per image per UNet call, 2.5 per VAE decode.
    assert unet_flops == pytest.approx(1.6065e12, rel=1e-3)
    assert vae_flops == pytest.approx(2.5145e12, rel=1e-3)
