"""benchmarks/gpu_generate.py cannot rot: its functions run here on CPU.

The fast path's compile is CUDA-only by default, so here the run covers its CPU part and
the style switch with eager adapters; the compiled paths are tests/pipelines/test_fast_path.py.

The timed path runs on Kiln's tiny models; the full-size path (shipped configs, FLOP
count on the real shapes) runs on the meta device, which needs no memory and no compute.
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
def test_tiny_cpu_run_prints_every_figure(bench, capsys) -> None:
    assert bench.main(["--device", "cpu", "--tiny"]) == 0
    out = capsys.readouterr().out
    assert "TFLOP/s" in out
    for case in bench.TINY_CASES:
        assert f"{case.name}: UNet call" in out
        assert f"  {case.name}: plain" in out  # summary line
    assert out.count("vs plain: latency") == len(bench.TINY_CASES)
    assert out.count("kiln phases") == len(bench.TINY_CASES)
    for family in ("sdxl", "sd15"):
        # The fast path as a CPU replica applies it (no compile), and a style switch.
        assert f"{family} fast path:" in out and "skipped: fa3 (not on CUDA)" in out
        assert f"{family} style switch (eager adapters, ranks 16, 32, 16)" in out
    assert "graphs compiled by style loads, switches and the styled calls: 0" in out


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
