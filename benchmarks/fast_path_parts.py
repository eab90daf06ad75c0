"""What each part of the GPU fast path costs or gains on one model, measured in one run.

``gpu_generate.py`` compares plain diffusers with the whole fast path; when the whole is
slower (SDXL 1024² on an H200 with torch 2.11: 3.04 s against 2.12 s, RESULTS.md), this
says which part: the same full-size random-weight model, rebuilt for each variant (nothing
one variant compiles or wraps leaks into the next), timed as ``gpu_generate`` times it.

    PYTHONPATH=. python3 benchmarks/fast_path_parts.py                 # SDXL 1024², 30 steps
    PYTHONPATH=. python3 benchmarks/fast_path_parts.py --model flux1-dev --steps 28
    PYTHONPATH=. python3 benchmarks/fast_path_parts.py --smoke         # tiny, on the CPU

Variants (each a fresh pipeline; ``FastPathOptions`` fields in brackets):

- ``plain``: stock diffusers;
- ``engine``: Kiln's engine, fast path off (``FastPathOptions.off()``);
- ``compile``: regional compile, no style slot (``style_slot=False``);
- ``compile+slot``: the default fast path (compile, the LoRA hotswap slot);
- ``attn-only+slot``: the default, but only the attention blocks compiled (the family's
  first block name: ``BasicTransformerBlock`` for SD, whose ``ResnetBlock2D`` stays eager);
- ``cuda-graphs+slot``: the default in compile mode ``reduce-overhead``.

Per variant it prints the median latency (after two short warm-up calls), its ratio to
``plain``, and, with ``--profile``, the GPU's kernel time in one call against that call's
wall time: a variant whose kernels sum to far less than its wall time waits on the CPU
(launches, guards), one whose kernels grow spends more on the GPU. On the CPU (``--smoke``)
nothing compiles: the compiled variants then time the eager path and say so.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gpu_generate as bench  # noqa: E402

VARIANTS = ("plain", "engine", "compile", "compile+slot", "attn-only+slot", "cuda-graphs+slot")


def fast_path_options(variant: str, device: str, compile_: str = "auto") -> Any:
    from pipelines.fast_path import FastPathOptions

    return {
        "engine": FastPathOptions.off(),
        "compile": FastPathOptions(compile=compile_, style_slot=False),
        "compile+slot": FastPathOptions(compile=compile_),
        "attn-only+slot": FastPathOptions(compile=compile_),
        "cuda-graphs+slot": FastPathOptions(compile=compile_, cuda_graphs=device == "cuda"),
    }[variant]


def runner(
    variant: str, case: bench.Case, device: str, dtype: Any, compile_: str = "auto"
) -> Callable[[int], Any]:
    """A fresh pipeline for ``variant``, set up as that variant runs it; its run(steps)."""
    from pipelines.engine import Engine
    from pipelines.fast_path import apply_fast_path

    model = bench.MODELS[case.model]
    pipe = model.build(device, dtype, tiny=device != "cuda")
    if variant == "plain":
        return bench.plain_runner(pipe, case, device)
    engine = Engine(bench.bench_spec(model, [case]), pipe)
    if variant == "attn-only+slot":
        blocks = engine.family.compile_blocks[:1]
        engine.family = dataclasses.replace(engine.family, compile_blocks=blocks)
    started = time.perf_counter()
    report = apply_fast_path(
        engine, fast_path_options(variant, device, compile_), [(case.width, case.height)], False
    )
    print(f"  {variant}: set up in {time.perf_counter() - started:.1f} s; {report.summary()}")
    return bench.kiln_runner(engine, bench.case_params(engine, case))


def graph_breaks() -> int:
    """Graph breaks dynamo has met in this process (each one is Python between graphs)."""
    import torch

    return sum(torch._dynamo.utils.counters["graph_break"].values())


def kernel_share(run: Callable[[int], Any], steps: int, device: str) -> str:
    """One call under the profiler: the GPU kernels' summed time against the call's wall."""
    from torch.profiler import ProfilerActivity, profile

    bench.sync(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        started = time.perf_counter()
        run(steps)
        bench.sync(device)
        wall = time.perf_counter() - started
    from torch.autograd import DeviceType

    events = [e for e in prof.key_averages() if e.device_type == DeviceType.CUDA]
    kernels = sum(e.self_device_time_total for e in events) / 1e6
    top = sorted(events, key=lambda e: e.self_device_time_total, reverse=True)[:5]
    names = ", ".join(f"{e.key[:40]} {e.self_device_time_total / 1e6:.3f}s" for e in top)
    return f"kernels {kernels:.3f} s of {wall:.3f} s wall under the profiler ({names})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sdxl", choices=sorted(bench.MODELS))
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--profile", action="store_true", help="kernel time of one call")
    parser.add_argument(
        "--compile", default="auto", choices=("auto", "on"),
        help="on: compile on the CPU too (the compiled variants' CPU overhead, tiny models)",
    )  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU, once")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    import torch

    device = "cpu" if args.smoke or not torch.cuda.is_available() else "cuda"
    if args.smoke:
        args.size, args.steps, args.repeats = 64, 2, 1
        args.variants = ["plain", "engine", "compile+slot"]
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    case = bench.Case(args.model, args.size, args.size, args.steps, 1, repeats=args.repeats)
    where = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"fast path parts: {case.name} on {where}, torch {torch.__version__}")
    medians: dict[str, float] = {}
    failed = 0
    for variant in args.variants:
        torch._dynamo.reset()
        try:
            breaks = graph_breaks()
            run = runner(variant, case, device, dtype, args.compile)
            measured = bench.measure(run, case, device)
            medians[variant] = statistics.median(measured.latencies)
            base = medians.get("plain")
            ratio = f", {medians[variant] / base:.3f}x plain" if base else ""
            runs = ", ".join(f"{x:.3f}" for x in measured.latencies)
            print(
                f"{variant:<18} median {medians[variant]:.3f} s{ratio}  (runs {runs}; "
                f"graph breaks {graph_breaks() - breaks})"
            )
            if args.profile:
                print(f"  {variant}: {kernel_share(run, case.steps, device)}")
        except Exception:  # one variant's failure must not cost the others' figures
            failed += 1
            print(f"{variant}: FAILED\n{traceback.format_exc()}")
        run = None  # type: ignore[assignment]
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
