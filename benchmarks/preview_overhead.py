"""What step previews cost the denoising loop: the same pipeline call with and without
``preview_every`` (issue 22), timed in one run, as a ratio.

    .venv/bin/python benchmarks/preview_overhead.py             # tiny models on the CPU
    .venv/bin/python benchmarks/preview_overhead.py --smoke     # 5 steps at 128 px, once
    PYTHONPATH=. python3 benchmarks/preview_overhead.py --gpu   # SDXL 1024², 30 steps, on CUDA

Each case runs ``Engine.generate`` with a listener (as a job's call is run) twice a
round, interleaved so drift hits both alike: once with ``preview_every=0`` (nothing
decoded) and once with ``--every`` (5: a tiny-autoencoder or linear preview of every
image every 5th step, encoded as WebP). It prints the median of ``--repeats`` rounds
after a warm-up, the previews made, and the ratio with / without.

CPU mode: the default catalog's tiny SD 1.5 (its tiny TAESD) and tiny FLUX.2 [klein]
(its family's linear projection) at 256 px. The tiny denoisers are so small that the
preview's decode and WebP encode weigh far more against them than against a real model:
the CPU ratio is an upper bound of the overhead's share, not the GPU figure.

GPU mode (``--gpu``): SDXL at full size with random weights from ``weights/configs``
(``benchmarks/gpu_generate.py`` builds it; compute does not depend on the weights), a
full-size random ``AutoencoderTiny`` (TAESDXL's architecture) installed as a
``preview_decoder`` component and loaded through the catalog loader, bf16, 1024², 30
steps, a preview every 5 steps. The issue's goal: at most 5% overhead.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.engine import Engine  # noqa: E402
from pipelines.params import GenerationParams  # noqa: E402
from pipelines.progress import StepEvent  # noqa: E402

PROMPT = "a kiln in a field of lavender at dusk, photograph"
GPU_GOAL = 0.05


class Counting:
    """A listener that counts the previews it hears and cancels nothing."""

    def __init__(self) -> None:
        self.previews = 0

    def on_step(self, event: StepEvent) -> None:
        self.previews += len(event.previews or ())

    def cancelled(self, request_index: int) -> bool:
        return False


def timed(engine: Engine, params: GenerationParams, sync: Callable[[], None]) -> tuple[float, int]:
    listener = Counting()
    sync()
    started = time.perf_counter()
    engine.generate([params], listener)
    sync()
    return time.perf_counter() - started, listener.previews


def compare(
    label: str, engine: Engine, build: Callable[[int], GenerationParams], args: Any, sync: Any
) -> float:
    """Median seconds without and with previews, interleaved; prints and returns the ratio."""
    plain, previewed = build(0), build(args.every)
    timed(engine, previewed, sync)  # warm-up, the decoder loaded
    without, with_, made = [], [], 0
    for _ in range(args.repeats):
        without.append(timed(engine, plain, sync)[0])
        seconds, made = timed(engine, previewed, sync)
        with_.append(seconds)
    a, b = statistics.median(without), statistics.median(with_)
    decoder = engine.preview_decoder.kind if engine.preview_decoder else "none"
    print(f"{label}: decoder {decoder}, {made} previews a call", flush=True)
    print(f"  without previews: {a * 1000:.1f} ms  (median of {args.repeats})", flush=True)
    print(f"  previews every {args.every} steps: {b * 1000:.1f} ms", flush=True)
    print(f"  with / without = {b / a:.3f}x ({(b / a - 1) * 100:+.1f}%)", flush=True)
    return b / a


def cpu(args: Any) -> int:
    import torch

    from weights.catalog import load_catalog
    from weights.tiny import ensure_tiny_components, ensure_tiny_models

    # One thread: on a shared CPU a torch op waits for its slowest thread, and a preempted
    # one turns both timings into noise.
    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    home = Path(os.environ.get("KILN_HOME", "~/.kiln")).expanduser()
    catalog = load_catalog(home)
    components = tuple(catalog.components.values())
    ensure_tiny_components(components)
    for model_id in args.models:
        spec = catalog.get(model_id)
        ensure_tiny_models([spec])
        engine = Engine.load(spec, device="cpu", components=components)
        resolution = args.resolution if args.resolution in spec.resolutions else None

        def build(every: int, spec: Any = spec, resolution: str | None = resolution) -> Any:
            return GenerationParams.build(
                spec, prompt=PROMPT, seed=1, steps=args.steps, resolution=resolution,
                preview_every=every,
            )  # fmt: skip

        size = build(0)
        label = f"{model_id} {size.width}x{size.height} {args.steps} steps n=1 on cpu"
        compare(label, engine, build, args, lambda: None)
    return 0


def gpu(args: Any) -> int:
    """SDXL 1024² with a full-size random TAESDXL, bf16 on CUDA."""
    import gpu_generate as bench
    import torch
    from diffusers import AutoencoderTiny

    from weights.catalog import ComponentKind, ComponentSpec

    device, dtype = "cuda", torch.bfloat16
    case = bench.Case("sdxl", 1024, 1024, args.steps, 1, repeats=args.repeats)
    pipe = bench.build_pipeline("sdxl", device, dtype, tiny=False)
    spec = bench.bench_spec(bench.MODELS["sdxl"], [case])
    with tempfile.TemporaryDirectory() as folder:
        AutoencoderTiny().save_pretrained(folder, safe_serialization=True)  # TAESDXL's shape
        taesdxl = ComponentSpec(
            "taesdxl", ComponentKind.PREVIEW_DECODER, Path(folder), families=(spec.family,)
        )
        engine = Engine(spec, pipe, components=[taesdxl])
        engine.preview_decoder  # loaded here, not inside a timed call  # noqa: B018

    def build(every: int) -> Any:
        return GenerationParams.build(
            engine.spec, prompt=PROMPT, seed=1, steps=args.steps, width=1024, height=1024,
            preview_every=every,
        )  # fmt: skip

    label = f"sdxl 1024x1024 {args.steps} steps n=1 bf16 on {torch.cuda.get_device_name()}"
    ratio = compare(label, engine, build, args, lambda: torch.cuda.synchronize())
    one_preview_parts(engine, pipe)
    verdict = "within" if ratio - 1 <= GPU_GOAL else "OVER"
    print(f"  goal <= {GPU_GOAL:.0%} overhead: {verdict}", flush=True)
    return 0


def one_preview_parts(engine: Engine, pipe: Any) -> None:
    """Where one preview's time goes on the GPU: the decode (to host pixels) and the WebP
    encode, each the median of 10 on 1024² latents, the GPU idle before each."""
    import torch

    from pipelines.previews import encode_preview

    latents = torch.randn(1, 4, 128, 128, device="cuda", dtype=torch.bfloat16)
    decoder = engine.preview_decoder
    decode, encode = [], []
    for _ in range(11):
        torch.cuda.synchronize()
        started = time.perf_counter()
        pixels = decoder.pixels(pipe, latents, 1024, 1024)
        decoded = time.perf_counter()
        encode_preview(pixels[0])
        decode.append(decoded - started)
        encode.append(time.perf_counter() - decoded)
    print(
        f"  one preview: decode to host {statistics.median(decode[1:]) * 1000:.1f} ms, "
        f"WebP {statistics.median(encode[1:]) * 1000:.1f} ms ({pixels.shape[2]}x{pixels.shape[1]})",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny-sd15", "tiny-flux2-klein"])
    parser.add_argument("--resolution", default="256px", help="CPU mode's tier (if offered)")
    parser.add_argument("--steps", type=int, default=None, help="20 CPU, 30 GPU")
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gpu", action="store_true", help="SDXL 1024² on CUDA")
    parser.add_argument("--smoke", action="store_true", help="5 steps at 128 px, once")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.repeats, args.resolution = 5, 1, "128px"
    if args.steps is None:
        args.steps = 30 if args.gpu else 20
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    return gpu(args) if args.gpu else cpu(args)


if __name__ == "__main__":
    sys.exit(main())
