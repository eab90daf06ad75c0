"""GPU generation benchmark: plain diffusers bf16 against Kiln's fast path, in one run.

Builds the full-size SD 1.5 and SDXL architectures from the configs shipped in
``weights/configs`` with random weights (compute does not depend on weight values, and
nothing is downloaded), then times, on the same modules:

- plain diffusers: the stock pipeline, ``EulerDiscreteScheduler``, bf16, eager;
- Kiln: ``pipelines.engine.Engine`` built from that pipeline with the GPU fast path
  (``pipelines.fast_path``: regional ``torch.compile``, LoRA hotswap slot, VAE policy,
  FA3 where available) applied as a replica applies it, compile and warm-up timed.

Per case it prints the median latency (after a warm-up), images/s, peak GPU memory, each
Kiln figure's ratio to plain diffusers, and the share of the compute floor: the FLOPs of
the UNet calls and the VAE decode (``FlopCounterMode`` on the real shapes) divided by the
bf16 matmul rate measured in the same run. Then, per family: the style-switch time under
compile (random-weight LoRAs of rank 16 and 32 hot-swapped, with dynamo's graph count
before and after), and with ``torchao`` importable the FP8 fast path, reported separately
with its output's difference from bf16 at the same seed. Figures print as they come.

    PYTHONPATH=. python3 benchmarks/gpu_generate.py            # full: < 8 min on an H100
    PYTHONPATH=. python3 benchmarks/gpu_generate.py --quick    # SDXL 30 steps n=1: < 3 min
    PYTHONPATH=. python3 benchmarks/gpu_generate.py --device cpu --tiny   # smoke test
    PYTHONPATH=. python3 benchmarks/gpu_generate.py --smoke               # the same

Imports only weights/ and pipelines/ (never serving/), so it runs from a source tree on a
machine with torch, transformers and the diffusers/open_clip wheels (benchmarks/run_on_gpu.sh).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROMPT = "a red fox in fresh snow at dawn, telephoto photograph, sharp focus, soft light"
NEGATIVE = "blurry, low quality"
GUIDANCE = 5.0
SEED = 0


@dataclass(frozen=True)
class Case:
    """One timed generation shape."""

    family: str
    width: int
    height: int
    steps: int
    n: int
    repeats: int

    @property
    def name(self) -> str:
        return f"{self.family} {self.width}x{self.height} {self.steps} steps n={self.n}"


FULL_CASES = (
    Case("sdxl", 1024, 1024, 30, 1, repeats=3),
    Case("sdxl", 1024, 1024, 30, 8, repeats=2),
    Case("sdxl", 1024, 1024, 20, 1, repeats=3),
    Case("sdxl", 1024, 1024, 20, 8, repeats=2),
    Case("sd15", 512, 512, 30, 1, repeats=5),
)
QUICK_CASES = (Case("sdxl", 1024, 1024, 30, 1, repeats=3),)
TINY_CASES = (
    Case("sdxl", 64, 64, 2, 1, repeats=2),
    Case("sdxl", 64, 64, 2, 2, repeats=2),
    Case("sd15", 64, 64, 2, 1, repeats=2),
)
# Style switching under compile: random LoRAs of these ranks on the attention projections.
STYLE_RANKS = (16, 32, 16)
# Warm-up calls are short: every step runs the same kernels at the same shapes, so two
# steps select them all (cuBLAS/cuDNN heuristics, allocator pools) at a fraction of the cost.
WARMUP_STEPS = 2
WARMUP_CALLS = 2


@dataclass(frozen=True)
class Measurement:
    """Latencies (seconds) of the timed calls and the peak GPU memory (bytes) around them."""

    latencies: tuple[float, ...]
    peak_bytes: int | None
    n: int
    last: Any = None  # what the last timed call returned

    @property
    def median(self) -> float:
        return statistics.median(self.latencies)

    @property
    def images_per_s(self) -> float:
        return self.n / self.median


def say(text: str) -> None:
    """Print a figure now: a long GPU run shows its results as it goes."""
    print(text, flush=True)


# ---------------------------------------------------------------------------- building


@contextlib.contextmanager
def default_device_and_dtype(device: Any, dtype: Any) -> Iterator[None]:
    """Create parameters directly on ``device`` in ``dtype``: no CPU init, no cast copy."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def build_modules(family: str, device: Any, dtype: Any, config: Path | None = None) -> dict:
    """UNet, VAE and text encoder(s) of a family's full-size config, randomly initialised."""
    import diffusers
    import transformers

    from pipelines.families import family_of
    from weights.single_file import shipped_config_dir

    folder = config or shipped_config_dir(family)
    modules: dict[str, Any] = {}
    with default_device_and_dtype(device, dtype):
        for name, cls in (
            ("unet", diffusers.UNet2DConditionModel),
            ("vae", diffusers.AutoencoderKL),
        ):
            modules[name] = cls.from_config(cls.load_config(folder, subfolder=name))
        for name, class_name in family_of(family).single_file.text_encoders.items():
            text_config = transformers.CLIPTextConfig.from_pretrained(folder, subfolder=name)
            modules[name] = getattr(transformers, class_name)(text_config)
    for module in modules.values():
        module.eval().requires_grad_(False)
    return modules


def assemble_pipeline(family: str, modules: dict) -> Any:
    """The stock diffusers pipeline of ``family`` around ``modules``, with Euler."""
    import diffusers

    from pipelines.families import family_of
    from pipelines.task import Task
    from weights.single_file import shipped_config_dir
    from weights.tokenizer import clip_tokenizer

    kind = family_of(family)
    cls = kind.pipeline_class(Task.TEXT_TO_IMAGE)
    scheduler_config = diffusers.EulerDiscreteScheduler.load_config(
        shipped_config_dir(family), subfolder="scheduler"
    )
    pads = kind.single_file.tokenizer_pads
    tokenizers = {name: clip_tokenizer(pad) for name, pad in pads.items()}
    pipe = cls(
        **modules,
        **tokenizers,
        scheduler=diffusers.EulerDiscreteScheduler.from_config(scheduler_config),
        **kind.stock_pipeline_options,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_pipeline(family: str, device: str, dtype: Any, tiny: bool) -> Any:
    """Full size from the shipped configs, or Kiln's tiny model (random, on CPU) for smoke."""
    if not tiny:
        return assemble_pipeline(family, build_modules(family, device, dtype))
    import torch

    from pipelines.families import family_of
    from weights.tiny import TINY_BUILDERS

    kind = family_of(family)
    built = TINY_BUILDERS[kind.tiny_builder]()
    names = (kind.denoiser, "vae", *kind.single_file.text_encoders)
    modules = {name: getattr(built, name) for name in names}
    for module in modules.values():
        if module.dtype != dtype or module.device != torch.device(device):
            module.to(device=device, dtype=dtype)
        module.eval().requires_grad_(False)
    return assemble_pipeline(family, modules)


def bench_spec(family: str, cases: Sequence[Case]) -> Any:
    """A catalog entry for the family's random-weight pipeline offering the cases' sizes."""
    from weights.catalog import ModelFamily, ModelKind, ModelSpec

    ratios = []
    for case in cases:
        divisor = math.gcd(case.width, case.height)
        ratios.append(f"{case.width // divisor}:{case.height // divisor}")
    long_side = max(max(c.width, c.height) for c in cases)
    return ModelSpec(
        id=f"bench-{family}",
        kind=ModelKind.BASE,
        family=ModelFamily(family),
        source=Path("random-weights"),
        resolutions={"bench": long_side},
        aspect_ratios=tuple(dict.fromkeys(ratios)),
        credits={"bench": 0.0},
        default_resolution="bench",
        default_steps=cases[0].steps,
        default_guidance=GUIDANCE,
        default_scheduler="euler",
    )


def kiln_engine(
    family: str, pipe: Any, cases: Sequence[Case], options: Any, warmup_batch: bool = True
) -> tuple[Any, Any]:
    """Kiln's Engine over ``pipe`` with the fast path ``options`` applied (None: eager, as
    ``Engine.load`` without one); returns it and the fast-path report."""
    from pipelines.engine import Engine
    from pipelines.fast_path import apply_fast_path

    engine = Engine(bench_spec(family, cases), pipe)
    if options is None:
        return engine, None
    sizes = list(dict.fromkeys((c.width, c.height) for c in cases))
    return engine, apply_fast_path(engine, options, warmup_sizes=sizes, warmup_batch=warmup_batch)


def case_params(engine: Any, case: Case, style: Any = None, seed: int = SEED) -> Any:
    """The case's request, resolved against the engine's catalog entry."""
    from pipelines.params import GenerationParams

    params = GenerationParams.build(
        engine.spec,
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        n=case.n,
        seed=seed,
        steps=case.steps,
        width=case.width,
        height=case.height,
        style=style,
    )
    if (params.width, params.height) != (case.width, case.height):
        raise ValueError(f"{case.name}: Kiln resolved {params.width}x{params.height}")
    return params


# --------------------------------------------------------------------------- measuring


def sync(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device: str, dtype: Any, size: int, iterations: int) -> float:
    """FLOP/s of a square matmul: the matrix rate this GPU reaches in this run."""
    import torch

    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    started = time.perf_counter()
    for _ in range(iterations):
        a @ b
    sync(device)
    return 2 * size**3 * iterations / (time.perf_counter() - started)


def count_flops(pipe: Any, case: Case) -> tuple[int, int]:
    """FLOPs of one UNet call (classifier-free guidance: batch 2n) and of the VAE decode."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    unet, device, dtype = pipe.unet, pipe.unet.device, pipe.unet.dtype
    batch = 2 * case.n
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    latent = (unet.config.in_channels, case.height // factor, case.width // factor)
    kwargs: dict[str, Any] = {
        "encoder_hidden_states": torch.randn(
            batch, 77, unet.config.cross_attention_dim, device=device, dtype=dtype
        )
    }
    if unet.config.addition_embed_type == "text_time":
        pooled = (
            unet.config.projection_class_embeddings_input_dim
            - 6 * unet.config.addition_time_embed_dim
        )
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(batch, pooled, device=device, dtype=dtype),
            "time_ids": torch.zeros(batch, 6, device=device, dtype=dtype),
        }
    # CPU attention kernels have no FLOP formula; the math backend decomposes into matmuls.
    backend = contextlib.nullcontext() if device.type == "cuda" else sdpa_kernel(SDPBackend.MATH)
    with torch.inference_mode(), backend:
        with FlopCounterMode(display=False) as unet_counter:
            unet(torch.randn(batch, *latent, device=device, dtype=dtype), 500, **kwargs)
        with FlopCounterMode(display=False) as vae_counter:
            pipe.vae.decode(torch.randn(case.n, *latent, device=device, dtype=dtype))
    return unet_counter.get_total_flops(), vae_counter.get_total_flops()


def measure(run: Callable[[int], Any], case: Case, device: str) -> Measurement:
    """Warm up with a short call, then time ``case.repeats`` full calls."""
    import torch

    cuda = torch.device(device).type == "cuda"
    for _ in range(WARMUP_CALLS):
        run(min(WARMUP_STEPS, case.steps))
    sync(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    latencies, last = [], None
    for _ in range(case.repeats):
        started = time.perf_counter()
        last = run(case.steps)
        sync(device)
        latencies.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated(device) if cuda else None
    return Measurement(tuple(latencies), peak, case.n, last)


def plain_runner(pipe: Any, case: Case, device: str) -> Callable[[int], Any]:
    """Stock diffusers usage: one prompt, ``num_images_per_prompt``, a seeded generator."""
    import torch

    def run(steps: int) -> Any:
        generator = torch.Generator(device).manual_seed(SEED)
        with torch.inference_mode():
            return pipe(
                prompt=PROMPT,
                negative_prompt=NEGATIVE,
                num_images_per_prompt=case.n,
                height=case.height,
                width=case.width,
                num_inference_steps=steps,
                guidance_scale=GUIDANCE,
                generator=generator,
                output_type="np",
            ).images

    return run


def kiln_runner(engine: Any, params: Any) -> Callable[[int], Any]:
    import dataclasses

    def run(steps: int) -> Any:
        return engine.generate([dataclasses.replace(params, steps=steps)])

    return run


# ---------------------------------------------------------------------------- printing


def gib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**30:.2f} GiB"


def report(label: str, m: Measurement, floor_s: float, base: Measurement | None) -> str:
    line = (
        f"  {label:<6} median {m.median:8.3f} s  {m.images_per_s:7.3f} img/s  "
        f"peak {gib(m.peak_bytes):>10}  floor share {floor_s / m.median:6.1%}  "
        f"runs {', '.join(f'{x:.3f}' for x in m.latencies)}"
    )
    if base is not None:
        memory = (
            f"{m.peak_bytes / base.peak_bytes:.3f}x" if m.peak_bytes and base.peak_bytes else "n/a"
        )
        line += (
            f"\n  {'':<6} vs plain: latency {m.median / base.median:.3f}x, "
            f"img/s {m.images_per_s / base.images_per_s:.3f}x, peak memory {memory}"
        )
    return line


def versions() -> str:
    import diffusers
    import torch
    import transformers

    return (
        f"python {sys.version.split()[0]}, torch {torch.__version__}, "
        f"diffusers {diffusers.__version__}, transformers {transformers.__version__}"
    )


# --------------------------------------------------------- styles and FP8 (fast path)


def random_lora_file(unet: Any, path: Path, seed: int, rank: int) -> Path:
    """A random rank-``rank`` LoRA on every attention projection of ``unet`` (diffusers'
    key layout), written to ``path``: a style's cost does not depend on its values."""
    import torch
    from safetensors.torch import save_file

    from pipelines.style_adapters import SLOT_TARGETS

    generator = torch.Generator("cpu").manual_seed(seed)
    tensors = {}
    for name, module in unet.named_modules():
        if not name.endswith(SLOT_TARGETS):
            continue
        base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
        if not isinstance(base, torch.nn.Linear):
            continue
        a = torch.randn(rank, base.in_features, generator=generator) / base.in_features**0.5
        b = torch.randn(base.out_features, rank, generator=generator) * 0.01
        tensors[f"unet.{name}.lora_A.weight"] = a.to(torch.bfloat16)
        tensors[f"unet.{name}.lora_B.weight"] = b.to(torch.bfloat16)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


def unique_graphs() -> int:
    """Graphs dynamo has compiled in this process: unchanged means nothing recompiled."""
    import torch

    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def style_switch(engine: Any, case: Case, device: str, folder: Path) -> None:
    """Load random styles, switch among them, and generate with one: times and recompiles."""
    from pipelines.params import StyleRef

    styles = [
        StyleRef(f"bench_r{rank}_{i}", str(random_lora_file(
            engine.pipe.unet, folder / f"style_{i}_r{rank}.safetensors", seed=i, rank=rank
        )))
        for i, rank in enumerate(STYLE_RANKS)
    ]  # fmt: skip
    mode = "hotswap into the compiled slot" if engine.styles.hotswap else "eager adapters"
    graphs = unique_graphs()
    loads = []
    for style in styles:
        started = time.perf_counter()
        engine.styles.activate(style)
        sync(device)
        loads.append(time.perf_counter() - started)
    switches = []
    for _ in range(3):
        for style in [*styles, None]:
            started = time.perf_counter()
            engine.styles.activate(style)
            sync(device)
            switches.append(time.perf_counter() - started)
    styled = measure(
        kiln_runner(engine, case_params(engine, case, style=styles[0])),
        dataclasses.replace(case, repeats=1),
        device,
    )
    recompiled = unique_graphs() - graphs
    say(
        f"{case.family} style switch ({mode}, ranks {', '.join(map(str, STYLE_RANKS))}): "
        f"first load + swap median {statistics.median(loads) * 1e3:.1f} ms, switch between "
        f"loaded styles median {statistics.median(switches) * 1e3:.1f} ms "
        f"(max {max(switches) * 1e3:.1f} ms); {case.name} with a style {styled.median:.3f} s; "
        f"graphs compiled by style loads, switches and the styled calls: {recompiled}"
    )
    engine.styles.activate(None)


def fp8_compare(engine: Any, case: Case, device: str, bf16: Measurement, floor: float) -> None:
    """The same engine with FP8 UNet matmuls: latency and the output's distance from bf16."""
    import numpy as np

    from pipelines.fast_path import FastPathError, quantize_fp8

    try:
        quantize_fp8(engine.pipe.unet, engine.device)
    except FastPathError as exc:
        say(f"{case.family} fp8: skipped ({exc})")
        return
    started = time.perf_counter()
    try:
        fp8 = measure(kiln_runner(engine, case_params(engine, case)), case, device)
    except Exception as exc:  # noqa: BLE001 - the run's other figures must still print
        say(f"{case.family} fp8: failed after quantizing ({type(exc).__name__}: {exc})")
        return
    say(f"{case.name} fp8 (recompile + measure {time.perf_counter() - started:.1f} s):")
    say(report("fp8", fp8, floor, bf16))
    ours = np.asarray(fp8.last[0].images[0], dtype=np.float64)
    base = np.asarray(bf16.last[0].images[0], dtype=np.float64)
    error = np.abs(ours - base)
    mse = float((error**2).mean())
    psnr = float("inf") if mse == 0 else 10 * math.log10(255**2 / mse)
    say(
        f"  {'':<6} fp8 vs bf16 at seed {SEED} (uint8 pixels): mean |diff| {error.mean():.2f}, "
        f"max {error.max():.0f}, PSNR {psnr:.1f} dB (random weights: a numerics figure, "
        "not an image-quality one)"
    )


# -------------------------------------------------------------------------------- main


@dataclass(frozen=True)
class RunConfig:
    """What a run does beyond the cases."""

    fast_path: Any  # FastPathOptions, or None for the eager engine
    styles: bool
    fp8: bool
    budget_s: float
    warmup_batch: bool


def run_cases(
    cases: Sequence[Case], device: str, dtype: Any, tiny: bool, config: RunConfig
) -> dict[str, tuple]:
    """Time every case, plain then Kiln, printing as it goes; returns the figures by name."""
    import tempfile

    import torch

    cuda = torch.device(device).type == "cuda"
    run_started = time.perf_counter()
    size, iterations = (8192, 50) if cuda else (512, 5)
    rate = matmul_rate(device, dtype, size, iterations)
    say(f"matmul {size}^3 {str(dtype).removeprefix('torch.')}: {rate / 1e12:.4g} TFLOP/s")

    def elapsed() -> float:
        return time.perf_counter() - run_started

    results: dict[str, tuple] = {}
    for family in dict.fromkeys(c.family for c in cases):
        if results and elapsed() > 0.8 * config.budget_s:
            say(f"{family}: skipped ({elapsed():.0f} s used of the {config.budget_s:.0f} s budget)")
            continue
        started = time.perf_counter()
        pipe = build_pipeline(family, device, dtype, tiny)
        params = sum(p.numel() for p in pipe.unet.parameters())
        say(f"{family}: built in {time.perf_counter() - started:.1f} s (UNet {params / 1e6:.1f}M)")
        family_cases = [c for c in cases if c.family == family]
        # Plain first for every case: what the fast path changes on the shared modules
        # (compiled blocks, the style slot) must not leak into the plain runs.
        floors: dict[Case, float] = {}
        plain: dict[Case, Measurement] = {}
        for case in family_cases:
            unet_flops, vae_flops = count_flops(pipe, case)
            total = case.steps * unet_flops + vae_flops
            floors[case] = total / rate
            say(
                f"{case.name}: UNet call {unet_flops / 1e12:.4g} TFLOP, VAE decode "
                f"{vae_flops / 1e12:.4g} TFLOP, total {total / 1e12:.4g} TFLOP, "
                f"compute floor {floors[case]:.3f} s"
            )
            plain[case] = measure(plain_runner(pipe, case, device), case, device)
            say(report("plain", plain[case], floors[case], None))
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        engine, fast = kiln_engine(
            family, pipe, family_cases, config.fast_path, config.warmup_batch
        )
        if fast is not None:
            say(
                f"{family} fast path: {time.perf_counter() - started:.1f} s to apply "
                f"(compile set-up {fast.compile_s:.1f} s, warm-up with compiling "
                f"{fast.warmup_s:.1f} s over {fast.warmup_calls} calls); {fast.summary()}"
            )
        first: Measurement | None = None
        for case in family_cases:
            kiln = measure(kiln_runner(engine, case_params(engine, case)), case, device)
            first = first or kiln
            say(f"{case.name}:")
            say(report("kiln", kiln, floors[case], plain[case]))
            phases = kiln.last[0].timings
            say(
                f"  {'':<6} kiln phases (last run): "
                + ", ".join(f"{k} {phases[k]:.3f} s" for k in ("encode", "denoise", "decode"))
            )
            results[case.name] = (plain[case], kiln, floors[case])
        if config.styles:
            with tempfile.TemporaryDirectory(prefix="kiln-bench-styles-") as folder:
                style_switch(engine, family_cases[0], device, Path(folder))
        if config.fp8 and first is not None:
            if elapsed() > 0.6 * config.budget_s:
                say(f"{family} fp8: skipped ({elapsed():.0f} s used: its recompile would not fit)")
            else:
                fp8_compare(engine, family_cases[0], device, first, floors[family_cases[0]])
        del engine, pipe
        if cuda:
            torch.cuda.empty_cache()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="SDXL 30 steps n=1 (< 3 min)")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu with --tiny")
    parser.add_argument("--tiny", action="store_true", help="tiny models: a smoke test on CPU")
    parser.add_argument("--eager", action="store_true", help="Kiln without the fast path")
    parser.add_argument("--compile", default="auto", help="the fast path's compile: auto|on|off")
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument("--compile-mode", default=None)
    parser.add_argument("--cuda-graphs", action="store_true", help="compile reduce-overhead")
    parser.add_argument("--no-styles", action="store_true", help="skip the style switch")
    parser.add_argument("--no-fp8", action="store_true", help="skip FP8 (needs torchao)")
    parser.add_argument("--smoke", action="store_true", help="= --device cpu --tiny")
    args = parser.parse_args(argv)
    if args.smoke:
        args.device, args.tiny = "cpu", True

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        say("gpu_generate: CUDA is not available; for a CPU smoke run use --device cpu --tiny")
        return 2
    if not args.device.startswith("cuda") and not args.tiny:
        say("gpu_generate: full-size models need CUDA; on CPU run with --tiny")
        return 2
    from pipelines.fast_path import FastPathOptions

    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    cases = TINY_CASES if args.tiny else QUICK_CASES if args.quick else FULL_CASES
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    say(f"gpu_generate on {name}: {versions()}")
    fast_path = None
    if not args.eager:
        fast_path = FastPathOptions(
            compile=args.compile,
            compile_backend=args.compile_backend,
            compile_mode=args.compile_mode,
            cuda_graphs=args.cuda_graphs,
        )
    if not args.no_styles and importlib.util.find_spec("peft") is None:
        say("style switch: skipped (peft is not installed)")
    fp8 = not (args.no_fp8 or args.quick or args.eager)
    if fp8 and importlib.util.find_spec("torchao") is None:
        say("fp8: skipped (torchao is not installed)")
        fp8 = False
    config = RunConfig(
        fast_path=fast_path,
        # Styles are LoRA adapters through peft: without it there is nothing to switch.
        styles=not args.no_styles and importlib.util.find_spec("peft") is not None,
        fp8=fp8 and args.device.startswith("cuda"),
        # Skip what would pass the GPU budget (8 min full, 3 min quick); a smoke run does all.
        budget_s=math.inf if args.tiny else 170.0 if args.quick else 450.0,
        warmup_batch=any(c.n > 1 for c in cases),
    )
    # Random weights can overflow to NaN images; their cost is the same, the cast warns.
    warnings.filterwarnings("ignore", message="invalid value encountered in cast")
    started = time.perf_counter()
    results = run_cases(cases, args.device, dtype, args.tiny, config)
    say(f"summary ({time.perf_counter() - started:.0f} s):")
    for case_name, (plain, kiln, floor) in results.items():
        say(
            f"  {case_name}: plain {plain.median:.3f} s ({plain.images_per_s:.3f} img/s), "
            f"kiln {kiln.median:.3f} s ({kiln.images_per_s:.3f} img/s): "
            f"{plain.median / kiln.median:.2f}x faster, floor {floor:.3f} s "
            f"(kiln at {floor / kiln.median:.1%} of it)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
