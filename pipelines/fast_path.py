"""The engine's GPU fast path (DESIGN.md §8): what is applied to a loaded model, and why.

    report = apply_fast_path(engine, FastPathOptions())     # once, when a replica starts
    report.applied, report.skipped, report.compile_s, report.warmup_s

Each optimisation has an off switch in ``FastPathOptions``; the defaults are the fastest
ones that stay correct for every request a replica may get. In order of application:

- ``fused_qkv`` (default off): one matmul for each attention's query/key/value. Fusion
  replaces the separate projections that LoRA styles adapt, so it is only for replicas
  that serve no styles: it is refused on an engine with styles loaded, and a fused
  engine refuses every style load afterwards (``StyleLoadError``, a clear 400).
- ``channels_last`` (default off): measured 1-12% *slower* than diffusers' default layout
  for SDXL and SD 1.5 in bf16 on an H200 (benchmarks/RESULTS.md, 2026-11-26).
- VAE dtype (``vae_dtype="auto"``): the serving dtype when it is bf16 (bf16 has fp32's
  range, so SDXL's VAE does not overflow in it); under fp16 (GPUs without bf16) SDXL's VAE
  runs in fp32 (its fp16 decode overflows to NaN) and SD 1.5's in fp16. ``"fp32"`` forces
  fp32. Latents are cast to the VAE's dtype at decode.
- Tiled VAE decode above ``vae_tile_min_pixels`` (width x height, default 1536²; 0: never):
  decoding a large image at once needs memory quadratic in its side; tiles bound it.
  Below the threshold the VAE decodes whole (faster, no tile blending), decided per call.
- ``fa3`` (default on): Flash-Attention 3 as SDPA's flash kernel where the installed torch
  registers it (``torch.nn.attention.list_flash_attention_impls``) and the GPU is Hopper.
- ``fp8`` (opt-in): the UNet's linear layers as FP8 matmuls with dynamic per-row
  activation scales (torchao ``Float8DynamicActivationFloat8WeightConfig``); needs torchao
  and a GPU of compute capability 8.9 or newer (Ada, Hopper) — a clear ``FastPathError``
  at load otherwise. It changes outputs slightly: the benchmark reports the difference.
  LoRA layers (the style slot) stay in the serving dtype.
- ``compile`` (``"auto"``: on CUDA only; ``"on"``; ``"off"``): ``torch.compile`` of the
  denoiser only, by repeated block (regional compilation: each ``BasicTransformerBlock``
  and ``ResnetBlock2D``, or the model's own ``_repeated_blocks``) so a replica starts in
  seconds, not minutes; text encoders and the VAE stay eager (a few % of the time).
  Shapes are dynamic after the second size seen (dynamo's automatic dynamic shapes), so
  the catalog's sizes share graphs instead of compiling one each. ``cuda_graphs`` (default
  off: not measured to pay with per-block graphs) picks the ``reduce-overhead`` mode.
- LoRA hotswap (with compile, unless fused): styles swap into one fixed adapter slot of
  rank ``lora_hotswap_rank`` (``KILN_STYLE_MAX_RANK``) created *before* compiling, so a
  style switch copies weights and never recompiles (pipelines/style_adapters.py).
- ``warmup`` (default on): one 2-step call per catalog size of the model (every step runs
  the same kernels), plus one batched call, so compiling and cuDNN/cuBLAS kernel choice
  happen at start, not inside the first requests. Skipped on CPU without compile (eager
  CPU calls have nothing to warm) and for instruct/inpaint models (their calls need input
  images: they compile on their first requests).

Decided where the issue is silent: the style slot exists from start-up on every compiled
replica that may serve styles, so base-model calls also run its (zeroed) LoRA matmuls —
a few % of the UNet's FLOPs at rank 64 — in exchange for no recompilation when the first
style arrives.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.env_fields import env_field, flag, non_negative_int

if TYPE_CHECKING:
    from pipelines.families import Family

logger = logging.getLogger(__name__)

COMPILE_CHOICES = ("auto", "on", "off")
VAE_DTYPES = ("auto", "fp32")
DEFAULT_TILE_MIN_PIXELS = 1536 * 1536
WARMUP_STEPS = 2
# Graphs per compiled block kept before dynamo falls back to eager: generous, since
# batch sizes and the catalog's sizes each add graphs until shapes turn dynamic.
RECOMPILE_LIMIT = 64


class FastPathError(RuntimeError):
    """A fast-path option this machine or this engine cannot honour (a start-up error)."""


def _compile_choice(text: str) -> str:
    if text not in COMPILE_CHOICES:
        raise ValueError(f"must be auto, on or off, got {text!r}")
    return text


def _vae_dtype(text: str) -> str:
    if text not in VAE_DTYPES:
        raise ValueError(f"must be auto or fp32, got {text!r}")
    return text


@dataclass(frozen=True)
class FastPathSwitches:
    """The GPU fast path's switches, one environment variable each.

    Declared here once (``env_field``): ``Settings`` inherits these fields, so serving
    reads them from the environment and the README lists them without naming them again;
    ``FastPathOptions`` adds what no variable sets directly (the LoRA hotswap rank, from
    ``KILN_STYLE_MAX_RANK``).
    """

    # fmt: off
    compile: str = env_field(
        "KILN_COMPILE", "auto", parse=_compile_choice,
        help="torch.compile the denoiser by repeated block: auto (on CUDA only; default), "
        "on, off",
    )
    compile_backend: str = env_field(
        "KILN_COMPILE_BACKEND", "inductor", parse=str,
        help="torch.compile backend (default inductor)",
    )
    compile_mode: str | None = env_field(
        "KILN_COMPILE_MODE", None, parse=str, help="torch.compile mode (default: none)"
    )
    cuda_graphs: bool = env_field(
        "KILN_CUDA_GRAPHS", False, parse=flag,
        help="CUDA graphs (torch.compile mode reduce-overhead; default off)",
    )
    fused_qkv: bool = env_field(
        "KILN_FUSED_QKV", False, parse=flag,
        help="fused QKV projections; only for models that serve no styles, which it then "
        "refuses (default off)",
    )
    channels_last: bool = env_field(
        "KILN_CHANNELS_LAST", False, parse=flag,
        help="channels-last memory layout (default off: measured slower on an H200)",
    )
    vae_tile_min_pixels: int = env_field(
        "KILN_VAE_TILE_MIN_PIXELS", DEFAULT_TILE_MIN_PIXELS, parse=non_negative_int,
        help="decode images above this many pixels in tiles; 0: never (default 1536x1536)",
    )
    vae_dtype: str = env_field(
        "KILN_VAE_DTYPE", "auto", parse=_vae_dtype,
        help="auto (the serving dtype; fp32 for SDXL under fp16; default) or fp32",
    )
    fa3: bool = env_field(
        "KILN_FA3", True, parse=flag,
        help="Flash-Attention 3 where torch has it, on Hopper (default on)",
    )
    fp8: bool = env_field(
        "KILN_FP8", False, parse=flag,
        help="FP8 matmuls in the UNet through torchao; needs compute capability 8.9+ "
        "(default off)",
    )
    warmup: bool = env_field(
        "KILN_WARMUP", True, parse=flag,
        help="warm up (and compile) at every catalog size when a replica starts (default on)",
    )
    # fmt: on


@dataclass(frozen=True)
class FastPathOptions(FastPathSwitches):
    """What the fast path applies; every field is an off switch (module docstring: why)."""

    lora_hotswap_rank: int = 64
    # The compiled style slot (LoRA hotswap) where compiling; off for a replica that
    # serves no styles, and for benchmarks/fast_path_parts.py's "compile alone".
    style_slot: bool = True

    def __post_init__(self) -> None:
        if self.compile not in COMPILE_CHOICES:
            raise ValueError(f"compile must be one of {COMPILE_CHOICES}, got {self.compile!r}")
        if self.vae_dtype not in VAE_DTYPES:
            raise ValueError(f"vae_dtype must be one of {VAE_DTYPES}, got {self.vae_dtype!r}")
        if self.vae_tile_min_pixels < 0:
            raise ValueError("vae_tile_min_pixels must not be negative")
        if self.lora_hotswap_rank < 1:
            raise ValueError("lora_hotswap_rank must be at least 1")
        if self.cuda_graphs and self.compile_mode not in (None, "reduce-overhead"):
            raise ValueError("cuda_graphs is compile mode reduce-overhead; drop compile_mode")

    @classmethod
    def off(cls) -> FastPathOptions:
        """Everything off: the engine as plain diffusers runs it."""
        return cls(compile="off", vae_tile_min_pixels=0, fa3=False, warmup=False)

    def compiles_on(self, device_type: str) -> bool:
        """Whether the denoiser is compiled on a device of this type."""
        return self.compile == "on" or (self.compile == "auto" and device_type == "cuda")

    @property
    def mode(self) -> str | None:
        """The ``torch.compile`` mode: ``reduce-overhead`` is how CUDA graphs are asked."""
        return "reduce-overhead" if self.cuda_graphs else self.compile_mode


@dataclass
class FastPathReport:
    """What ``apply_fast_path`` did: applied names, skipped ones with the reason, seconds.

    ``compile_s`` is wrapping the blocks; compiling itself is lazy and happens in the
    warm-up calls, so ``warmup_s`` holds it."""

    applied: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    compiled_modules: int = 0
    compile_s: float = 0.0
    warmup_s: float = 0.0
    warmup_calls: int = 0

    def summary(self) -> str:
        skipped = ", ".join(f"{k} ({v})" for k, v in self.skipped.items()) or "none"
        return (
            f"applied: {', '.join(self.applied) or 'none'}; skipped: {skipped}; "
            f"{self.compiled_modules} compiled blocks; compile {self.compile_s:.1f}s, "
            f"warm-up {self.warmup_s:.1f}s ({self.warmup_calls} calls)"
        )


def apply_fast_path(
    engine: Any,
    options: FastPathOptions,
    warmup_sizes: list[tuple[int, int]] | None = None,
    warmup_batch: bool = True,
) -> FastPathReport:
    """Apply ``options`` to an ``Engine`` (typed ``Any``: the engine imports this module)
    in place; ``warmup_sizes`` (width, height)
    default to the model's catalog sizes, ``warmup_batch`` adds a batched call. What is
    compiled and the VAE's dtype are the model family's to say (``engine.family``).
    Raises ``FastPathError`` for an option that cannot be honoured."""
    import torch

    pipe, family = engine.pipe, engine.family
    unet = getattr(pipe, family.denoiser)
    device = unet.device
    report = FastPathReport()

    if options.fused_qkv:
        if engine.styles.loaded:
            raise FastPathError(
                "fused_qkv on an engine with LoRA styles loaded: fusion bypasses the "
                "styles' layers on the separate projections; turn KILN_FUSED_QKV off"
            )
        unet.fuse_qkv_projections()
        pipe.vae.fuse_qkv_projections()
        engine.styles.refuse("this model's replica fuses QKV projections (KILN_FUSED_QKV)")
        report.applied.append("fused_qkv")
    if options.channels_last:
        unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
        report.applied.append("channels_last")
    vae_dtype = select_vae_dtype(family, unet.dtype, options.vae_dtype)
    if pipe.vae.dtype != vae_dtype:
        pipe.vae.to(dtype=vae_dtype)
        report.applied.append(f"vae_{str(vae_dtype).removeprefix('torch.')}")
    tile_vae_decode(pipe.vae, options.vae_tile_min_pixels)
    if options.vae_tile_min_pixels:
        report.applied.append(f"vae_tiling>{options.vae_tile_min_pixels}px")
    if options.fa3:
        _flash_attention_3(device, report)

    compiling = options.compiles_on(device.type)
    hotswap = compiling and options.style_slot and not options.fused_qkv
    if hotswap and importlib.util.find_spec("peft") is None:
        # Without peft no style can load at all: there is nothing to swap.
        report.skipped["lora_hotswap"] = "peft is not installed"
        hotswap = False
    if hotswap:
        # Before compiling (and before FP8): the slot is part of the compiled graph.
        engine.styles.enable_hotswap(options.lora_hotswap_rank)
        report.applied.append(f"lora_hotswap(rank {options.lora_hotswap_rank})")
    if options.fp8:
        quantize_fp8(unet, device)
        report.applied.append("fp8")
    if compiling:
        started = time.perf_counter()
        report.compiled_modules = compile_denoiser(unet, family.compile_blocks, options)
        report.compile_s = time.perf_counter() - started
        report.applied.append(f"compile({options.compile_backend}, mode {options.mode})")
    else:
        report.skipped["compile"] = f"compile={options.compile} on {device.type}"
    if not options.warmup:
        report.skipped["warmup"] = "off"
    elif not (compiling or device.type == "cuda"):
        report.skipped["warmup"] = "eager on CPU: nothing to compile or tune"
    elif "text_to_image" not in engine.tasks:
        report.skipped["warmup"] = f"a {engine.spec.kind} model warms up on its first requests"
    else:
        started = time.perf_counter()
        report.warmup_calls = warm_up(engine, warmup_sizes, warmup_batch)
        report.warmup_s = time.perf_counter() - started
        # Compiling is lazy: its cost lands in the first calls, i.e. in the warm-up.
        report.applied.append("warmup")
    logger.info("fast path: %s", report.summary())
    return report


def select_vae_dtype(family: Family, serving_dtype: Any, setting: str = "auto") -> Any:
    """The VAE's dtype: fp32 when asked; else the serving dtype, except under fp16 for a
    family whose VAE overflows in it (SDXL's; bf16 and fp32 do not)."""
    import torch

    if setting == "fp32":
        return torch.float32
    if serving_dtype == torch.float16 and family.vae_overflows_in_fp16:
        return torch.float32
    return serving_dtype


def tile_vae_decode(vae: Any, min_pixels: int) -> None:
    """Make ``vae.decode`` tile images above ``min_pixels`` (0: never), decided per call,
    and cast latents to the VAE's dtype (it may differ from the UNet's)."""
    decode = getattr(vae, "_kiln_untiled_decode", None) or vae.decode
    vae._kiln_untiled_decode = decode
    factor = 2 ** (len(vae.config.block_out_channels) - 1)

    def tiling_decode(z: Any, *args: Any, **kwargs: Any) -> Any:
        pixels = z.shape[-1] * z.shape[-2] * factor * factor
        vae.use_tiling = bool(min_pixels) and pixels > min_pixels
        try:
            return decode(z.to(vae.dtype), *args, **kwargs)
        finally:
            vae.use_tiling = False  # encoding (image tasks) stays untiled

    vae.decode = tiling_decode


def compile_denoiser(unet: Any, family_blocks: tuple[str, ...], options: FastPathOptions) -> int:
    """``torch.compile`` the denoiser's repeated blocks in place (its own
    ``_repeated_blocks``, else ``family_blocks``, the family's); returns how many."""
    import torch

    for name in ("recompile_limit", "cache_size_limit"):
        if getattr(torch._dynamo.config, name, RECOMPILE_LIMIT) < RECOMPILE_LIMIT:
            setattr(torch._dynamo.config, name, RECOMPILE_LIMIT)
    blocks = tuple(getattr(unet, "_repeated_blocks", None) or family_blocks)
    count = 0
    for module in unet.modules():
        if type(module).__name__ in blocks:
            module.compile(backend=options.compile_backend, mode=options.mode, fullgraph=False)
            count += 1
    if not count:
        raise FastPathError(f"no {', '.join(blocks)} blocks to compile in {type(unet).__name__}")
    return count


def compiled_modules(module: Any) -> list[str]:
    """Names of the submodules that ``nn.Module.compile`` compiled."""
    return [
        name
        for name, sub in module.named_modules()
        if getattr(sub, "_compiled_call_impl", None) is not None
    ]


def warm_up(engine: Any, sizes: list[tuple[int, int]] | None = None, batch: bool = True) -> int:
    """Short calls at every catalog size (n=1) and one batched call; returns how many.

    Runs in the base model (no style): with hotswap the style slot is in the graph either
    way, zeroed, so styled calls reuse these graphs."""
    from pipelines.params import GenerationParams

    spec = engine.spec
    if sizes is None:
        sizes = [tuple(int(x) for x in size.split("x")) for size in spec.sizes]
    calls = [(w, h, 1) for w, h in sizes]
    if sizes and batch:
        # A second batch size marks the batch dimension dynamic now, not at the first
        # batched request.
        calls.append((sizes[0][0], sizes[0][1], 2))
    for width, height, n in calls:
        params = GenerationParams.build(
            spec, prompt="warm-up", n=n, seed=0, steps=WARMUP_STEPS, width=width, height=height
        )
        engine.generate([params])
    return len(calls)


def _flash_attention_3(device: Any, report: FastPathReport) -> None:
    import torch

    attention = torch.nn.attention
    if device.type != "cuda":
        report.skipped["fa3"] = "not on CUDA"
        return
    if not hasattr(attention, "list_flash_attention_impls"):
        report.skipped["fa3"] = f"torch {torch.__version__} has no flash attention registry"
        return
    if torch.cuda.get_device_capability(device)[0] != 9:
        report.skipped["fa3"] = "not a Hopper GPU"
        return
    if "FA3" not in attention.list_flash_attention_impls():
        report.skipped["fa3"] = "no FA3 implementation registered with this torch"
        return
    try:
        attention.activate_flash_attention_impl("FA3")
    except (RuntimeError, ImportError, ValueError) as exc:
        report.skipped["fa3"] = f"activation failed: {exc}"
        return
    report.applied.append("fa3")


def quantize_fp8(unet: Any, device: Any) -> None:
    """The UNet's linear layers (not LoRA's) as FP8 weights with dynamic per-row FP8
    activations, in place; ``FastPathError`` without torchao or a capable GPU."""
    import torch

    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
        raise FastPathError("fp8 needs a CUDA GPU of compute capability 8.9+ (Ada, Hopper)")
    try:
        from torchao.quantization import (
            Float8DynamicActivationFloat8WeightConfig,
            PerRow,
            quantize_,
        )
    except ImportError as exc:
        raise FastPathError(
            f"fp8 needs torchao (pip install 'kiln[gpu]'); cannot import it: {exc}"
        ) from exc

    def is_base_linear(module: Any, name: str) -> bool:
        # LoRA A/B layers are rank-thin and swapped per style: they stay in bf16.
        return isinstance(module, torch.nn.Linear) and "lora_" not in name

    quantize_(unet, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()), is_base_linear)
