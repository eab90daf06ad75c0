"""GPU generation benchmark: plain diffusers bf16 against Kiln's fast path, in one run.

Builds full-size architectures with random weights (compute does not depend on weight
values, and nothing is downloaded): SD 1.5 and SDXL from the configs shipped in
``weights/configs``, FLUX.1 [dev] and FLUX.2 [klein] 4B from their real configs written out
below (``FLUX1_DEV``, ``FLUX2_KLEIN_4B``). Every module is created directly on the GPU in
bf16 (``default_device_and_dtype``: its initialisation runs there, never on the CPU).
Then it times, on the same modules:

- plain diffusers: the stock pipeline, ``EulerDiscreteScheduler`` (FLUX:
  ``FlowMatchEulerDiscreteScheduler``), bf16, eager;
- Kiln: ``pipelines.engine.Engine`` built from that pipeline with the GPU fast path
  (``pipelines.fast_path``: regional ``torch.compile``, LoRA hotswap slot, VAE policy,
  FA3 where available) applied as a replica applies it, compile and warm-up timed.

Per case it prints the median latency (after a warm-up), images/s, peak GPU memory, each
Kiln figure's ratio to plain diffusers, and the share of the compute floor: the FLOPs of
the denoiser calls, the VAE decode (and, for the flow transformers, the text encoders)
divided by the bf16 matmul rate measured in the same run (``dit_forward_flops`` says how
a transformer forward is counted; the UNet and the VAE are counted by ``FlopCounterMode``
on the real shapes). Then, per model the engine runs: the style-switch time under compile
where Kiln serves styles on the model (SD and FLUX alike): random-weight
LoRAs of rank 16 and 32 hot-swapped, with dynamo's graph count before and after; and with
``torchao`` importable the FP8 fast path, reported separately with its output's
difference from bf16 at the same seed. Figures print as they come.

FLUX runs through the engine like SD (``pipelines/families`` ``flux1``/``flux2``): plain
``FluxPipeline`` / ``Flux2KleinPipeline`` first, then ``Engine.generate`` with the fast
path (catalog defaults from the ``MODELS`` entry: ``flow_euler``, its guidance, no
negative prompt). A model whose family the engine does not run yet (the next ones:
Qwen-Image, Z-Image) gets ``engine=False`` on its entry: its rows time plain diffusers
and print "engine: not yet"; turning the flag on is the one change once its family lands.

    PYTHONPATH=. python3 benchmarks/gpu_generate.py            # full: < 10 min on an H100
    PYTHONPATH=. python3 benchmarks/gpu_generate.py --quick    # FLUX.1 [dev] + SDXL n=1: < 6 min
    PYTHONPATH=. python3 benchmarks/gpu_generate.py --device cpu --tiny   # smoke test
    PYTHONPATH=. python3 benchmarks/gpu_generate.py --smoke               # the same

Imports only weights/ and pipelines/ (never serving/, ray, fastapi or pydantic), so it runs
from a source tree on a machine with torch, transformers and the diffusers/open_clip wheels
(benchmarks/run_on_gpu.sh), offline.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib
import importlib.util
import math
import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROMPT = "a red fox in fresh snow at dawn, telephoto photograph, sharp focus, soft light"
NEGATIVE = "blurry, low quality"
GUIDANCE = 5.0
SEED = 0


@dataclass(frozen=True)
class Case:
    """One timed generation shape of one model (a key of ``MODELS``)."""

    model: str
    width: int
    height: int
    steps: int
    n: int
    repeats: int

    @property
    def name(self) -> str:
        return f"{self.model} {self.width}x{self.height} {self.steps} steps n={self.n}"


# FLUX.1 [dev]: 28 steps (its reference setting); [klein] 4B: its default, 4 (distilled).
FULL_CASES = (
    Case("sdxl", 1024, 1024, 30, 1, repeats=3),
    Case("sdxl", 1024, 1024, 30, 8, repeats=2),
    Case("sdxl", 1024, 1024, 20, 1, repeats=3),
    Case("sdxl", 1024, 1024, 20, 8, repeats=2),
    Case("flux1-dev", 1024, 1024, 28, 1, repeats=3),
    Case("flux1-dev", 1024, 1024, 28, 4, repeats=2),
    Case("flux2-klein-4b", 1024, 1024, 4, 1, repeats=5),
    Case("flux2-klein-4b", 1024, 1024, 4, 4, repeats=3),
    Case("sd15", 512, 512, 30, 1, repeats=5),
)
# One FLUX case and one SDXL case in a 15-minute device budget, start-up included. FLUX
# first: the newest figure (its blocks compile like SDXL's).
QUICK_CASES = (
    Case("flux1-dev", 1024, 1024, 28, 1, repeats=2),
    Case("sdxl", 1024, 1024, 30, 1, repeats=3),
)
TINY_CASES = (
    Case("sdxl", 64, 64, 2, 1, repeats=2),
    Case("sdxl", 64, 64, 2, 2, repeats=2),
    Case("sd15", 64, 64, 2, 1, repeats=2),
    Case("flux1-dev", 64, 64, 2, 1, repeats=1),
    Case("flux1-dev", 64, 64, 2, 2, repeats=1),
    Case("flux2-klein-4b", 64, 64, 2, 2, repeats=1),  # n=1 is the same path: CI time
)
# Style switching under compile: random LoRAs of these ranks on the attention projections.
STYLE_RANKS = (16, 32, 16)
# Warm-up calls are short: every step runs the same kernels at the same shapes, so two
# steps select them all (cuBLAS/cuDNN heuristics, allocator pools) at a fraction of the cost.
WARMUP_STEPS = 2
WARMUP_CALLS = 2
# On a CPU (the smoke run's tiny models) one warm-up call pays the one-time costs; a
# second would only lengthen the CI run.
CPU_WARMUP_CALLS = 1


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


# ---------------------------------------------------------- flow-matching transformers


@dataclass(frozen=True)
class TextEncoder:
    """A transformers text encoder: its config class, model class, real config, and how
    many tokens the pipeline feeds it (padded to that length: a fixed cost per prompt)."""

    config_class: str
    model_class: str
    config: Mapping[str, Any]
    tokens: int


@dataclass(frozen=True)
class DitArchitecture:
    """A flow-matching transformer model, written out: the real full-size configs (no
    download, no hub files on the GPU machine) and Kiln's tiny twin for ``--smoke``."""

    pipeline: str  # the diffusers pipeline class
    transformer: tuple[str, Mapping[str, Any]]  # diffusers class, config
    vae: tuple[str, Mapping[str, Any]]
    text_encoders: Mapping[str, TextEncoder]
    # Tokenizers by component: Kiln's tiny ones (weights.tokenizer, weights.tiny_text_encoders)
    # at full size too: the cost depends on the padded length, not on the vocabulary.
    tokenizers: Mapping[str, str]  # component -> "module:factory"
    scheduler: Mapping[str, Any]  # FlowMatchEulerDiscreteScheduler
    text_tokens: int  # the prompt tokens the transformer reads (max_sequence_length)
    mlp_matrices: int  # 2: GELU MLP (FLUX.1); 3: SwiGLU, gate and up fused (FLUX.2)
    tiny: str  # "module:factory" of the tiny pipeline (weights.tiny_flux)
    pipeline_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def resolve(reference: str) -> Any:
    """``"module:name"`` -> the object, imported when needed (nothing heavy at import)."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


# FLUX.1's and FLUX.2's scheduler: the shift grows with the image's token count.
FLOW_SCHEDULER = {
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
}
_VAE_BLOCKS = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "sample_size": 1024,
    "mid_block_add_attention": True,
}

# black-forest-labs/FLUX.1-dev: an 11.9B transformer (19 double-stream + 38 single-stream
# blocks, 24 heads of 128), CLIP ViT-L/14's text tower (pooled) and T5 v1.1 XXL's encoder
# (512 tokens), the 16-channel VAE.
FLUX1_DEV = DitArchitecture(
    pipeline="FluxPipeline",
    transformer=(
        "FluxTransformer2DModel",
        {
            "patch_size": 1,
            "in_channels": 64,
            "num_layers": 19,
            "num_single_layers": 38,
            "attention_head_dim": 128,
            "num_attention_heads": 24,
            "joint_attention_dim": 4096,
            "pooled_projection_dim": 768,
            "guidance_embeds": True,
            "axes_dims_rope": [16, 56, 56],
        },
    ),
    vae=(
        "AutoencoderKL",
        {
            **_VAE_BLOCKS,
            "latent_channels": 16,
            "force_upcast": True,
            "scaling_factor": 0.3611,
            "shift_factor": 0.1159,
            "use_quant_conv": False,
            "use_post_quant_conv": False,
        },
    ),
    text_encoders={
        "text_encoder": TextEncoder(
            "CLIPTextConfig",
            "CLIPTextModel",
            {
                "vocab_size": 49408,
                "hidden_size": 768,
                "intermediate_size": 3072,
                "projection_dim": 768,
                "num_hidden_layers": 12,
                "num_attention_heads": 12,
                "max_position_embeddings": 77,
                "hidden_act": "quick_gelu",
                "layer_norm_eps": 1e-5,
                "bos_token_id": 0,
                "eos_token_id": 2,
                "pad_token_id": 1,
            },
            tokens=77,
        ),
        "text_encoder_2": TextEncoder(
            "T5Config",
            "T5EncoderModel",
            {
                "vocab_size": 32128,
                "d_model": 4096,
                "d_kv": 64,
                "d_ff": 10240,
                "num_layers": 24,
                "num_heads": 64,
                "relative_attention_num_buckets": 32,
                "relative_attention_max_distance": 128,
                "layer_norm_epsilon": 1e-6,
                "feed_forward_proj": "gated-gelu",
                "tie_word_embeddings": False,
                "pad_token_id": 0,
                "eos_token_id": 1,
            },
            tokens=512,
        ),
    },
    tokenizers={
        "tokenizer": "weights.tokenizer:clip_tokenizer",
        "tokenizer_2": "weights.tiny_text_encoders:t5_tokenizer",
    },
    scheduler=FLOW_SCHEDULER,
    text_tokens=512,
    mlp_matrices=2,
    tiny="weights.tiny_flux:tiny_flux1_pipeline",
)

# black-forest-labs/FLUX.2-klein-4B (step-distilled): a 3.9B transformer (5 double-stream +
# 20 single-stream blocks, 24 heads of 128, SwiGLU MLPs of ratio 3), Qwen3-4B as the text
# encoder (hidden layers 9, 18 and 27 stacked: 3 x 2560 features, 512 tokens), the
# 32-channel FLUX.2 VAE.
FLUX2_KLEIN_4B = DitArchitecture(
    pipeline="Flux2KleinPipeline",
    transformer=(
        "Flux2Transformer2DModel",
        {
            "patch_size": 1,
            "in_channels": 128,
            "num_layers": 5,
            "num_single_layers": 20,
            "attention_head_dim": 128,
            "num_attention_heads": 24,
            "joint_attention_dim": 7680,
            "timestep_guidance_channels": 256,
            "mlp_ratio": 3.0,
            "axes_dims_rope": [32, 32, 32, 32],
            "rope_theta": 2000,
            "eps": 1e-6,
            "guidance_embeds": False,
        },
    ),
    vae=(
        "AutoencoderKLFlux2",
        {
            **_VAE_BLOCKS,
            "latent_channels": 32,
            "use_quant_conv": True,
            "use_post_quant_conv": True,
            "batch_norm_eps": 1e-4,
            "batch_norm_momentum": 0.1,
            "patch_size": [2, 2],
        },
    ),
    text_encoders={
        "text_encoder": TextEncoder(
            "Qwen3Config",
            "Qwen3ForCausalLM",
            {
                "vocab_size": 151936,
                "hidden_size": 2560,
                "intermediate_size": 9728,
                "num_hidden_layers": 36,
                "num_attention_heads": 32,
                "num_key_value_heads": 8,
                "head_dim": 128,
                "hidden_act": "silu",
                "max_position_embeddings": 40960,
                "rms_norm_eps": 1e-6,
                "rope_theta": 1000000,
                "attention_bias": False,
                "tie_word_embeddings": True,
            },
            tokens=512,
        ),
    },
    tokenizers={"tokenizer": "weights.tiny_text_encoders:qwen_tokenizer"},
    scheduler=FLOW_SCHEDULER,
    text_tokens=512,
    mlp_matrices=3,
    tiny="weights.tiny_flux:tiny_flux2_klein_pipeline",
    pipeline_options={"is_distilled": True},
)


def build_dit_modules(arch: DitArchitecture, device: Any, dtype: Any) -> dict:
    """Transformer, VAE and text encoder(s) of ``arch``'s full-size configs, created and
    randomly initialised on ``device`` (on the GPU: no CPU copy ever exists)."""
    import diffusers
    import transformers

    modules: dict[str, Any] = {}
    with default_device_and_dtype(device, dtype):
        for name, (class_name, config) in (("transformer", arch.transformer), ("vae", arch.vae)):
            modules[name] = getattr(diffusers, class_name).from_config(dict(config))
        for name, encoder in arch.text_encoders.items():
            config = getattr(transformers, encoder.config_class)(**encoder.config)
            modules[name] = getattr(transformers, encoder.model_class)(config)
    for module in modules.values():
        module.eval().requires_grad_(False)
    return modules


def assemble_dit_pipeline(arch: DitArchitecture, modules: dict) -> Any:
    """The stock diffusers pipeline of ``arch`` around ``modules``, flow-matching Euler."""
    import diffusers

    pipe = getattr(diffusers, arch.pipeline)(
        **modules,
        **{name: resolve(factory)() for name, factory in arch.tokenizers.items()},
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(**arch.scheduler),
        **arch.pipeline_options,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_dit_pipeline(arch: DitArchitecture, device: str, dtype: Any, tiny: bool) -> Any:
    """Full size from ``arch``'s configs, or the tiny twin's modules (``weights.tiny_flux``),
    assembled the same way."""
    if not tiny:
        return assemble_dit_pipeline(arch, build_dit_modules(arch, device, dtype))
    import torch

    built = resolve(arch.tiny)()
    modules = {name: getattr(built, name) for name in ("transformer", "vae", *arch.text_encoders)}
    for module in modules.values():
        if module.dtype != dtype or module.device != torch.device(device):
            module.to(device=device, dtype=dtype)
        module.eval().requires_grad_(False)
    return assemble_dit_pipeline(arch, modules)


def bench_spec(model: BenchModel, cases: Sequence[Case]) -> Any:
    """A catalog entry for the model's random-weight pipeline offering the cases' sizes."""
    from weights.catalog import ModelFamily, ModelKind, ModelSpec

    ratios = []
    for case in cases:
        divisor = math.gcd(case.width, case.height)
        ratios.append(f"{case.width // divisor}:{case.height // divisor}")
    long_side = max(max(c.width, c.height) for c in cases)
    return ModelSpec(
        id=f"bench-{cases[0].model}",
        kind=ModelKind.BASE,
        family=ModelFamily(model.family),
        source=Path("random-weights"),
        resolutions={"bench": long_side},
        aspect_ratios=tuple(dict.fromkeys(ratios)),
        credits={"bench": 0.0},
        default_resolution="bench",
        default_steps=cases[0].steps,
        default_guidance=model.guidance,
        default_scheduler=model.scheduler,
    )


def kiln_engine(
    model: BenchModel, pipe: Any, cases: Sequence[Case], options: Any, warmup_batch: bool = True
) -> tuple[Any, Any]:
    """Kiln's Engine over ``pipe`` with the fast path ``options`` applied (None: eager, as
    ``Engine.load`` without one); returns it and the fast-path report."""
    from pipelines.engine import Engine
    from pipelines.fast_path import apply_fast_path

    engine = Engine(bench_spec(model, cases), pipe)
    if options is None:
        return engine, None
    sizes = list(dict.fromkeys((c.width, c.height) for c in cases))
    return engine, apply_fast_path(engine, options, warmup_sizes=sizes, warmup_batch=warmup_batch)


def case_params(engine: Any, case: Case, style: Any = None, seed: int = SEED) -> Any:
    """The case's request, resolved against the engine's catalog entry."""
    from pipelines.params import GenerationParams

    negative = {"negative_prompt": NEGATIVE} if MODELS[case.model].negative_prompt else {}
    params = GenerationParams.build(
        engine.spec,
        prompt=PROMPT,
        **negative,
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


@dataclass(frozen=True)
class Flops:
    """The FLOPs of a case's floor: one denoiser call over the batch (``steps`` of them),
    the VAE decode of the batch, and the prompt's text encoding."""

    denoiser_call: int
    decode: int
    encode: int = 0

    def total(self, steps: int) -> int:
        return steps * self.denoiser_call + self.decode + self.encode


@contextlib.contextmanager
def countable_attention(device: Any) -> Iterator[None]:
    """CPU attention kernels have no FLOP formula; the math backend decomposes into matmuls."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if device.type == "cuda":
        yield
        return
    with sdpa_kernel(SDPBackend.MATH):
        yield


def vae_decode_flops(vae: Any, case: Case) -> int:
    """FLOPs of decoding the case's batch (``FlopCounterMode`` on the real latent shape)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    latent = (vae.config.latent_channels, case.height // factor, case.width // factor)
    with (
        torch.inference_mode(),
        countable_attention(vae.device),
        FlopCounterMode(display=False) as counter,
    ):
        vae.decode(torch.randn(case.n, *latent, device=vae.device, dtype=vae.dtype))
    return counter.get_total_flops()


def count_unet_flops(pipe: Any, case: Case) -> Flops:
    """FLOPs of one UNet call (classifier-free guidance: batch 2n) and of the VAE decode;
    the CLIP text encoders are left out (under 0.1% of the total)."""
    import torch
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
    with (
        torch.inference_mode(),
        countable_attention(device),
        FlopCounterMode(display=False) as unet_counter,
    ):
        unet(torch.randn(batch, *latent, device=device, dtype=dtype), 500, **kwargs)
    return Flops(unet_counter.get_total_flops(), vae_decode_flops(pipe.vae, case))


def dit_forward_flops(
    config: Mapping[str, Any], mlp_matrices: int, image_tokens: int, text_tokens: int
) -> int:
    """FLOPs of one flow-transformer forward for one image, from its config.

    With ``d = heads x head_dim``, ``L = image_tokens + text_tokens`` and ``r`` the MLP
    ratio (4 for FLUX.1, ``mlp_ratio`` 3 for FLUX.2), every block, double-stream (each
    stream its own weights for its own tokens) or single-stream (fused), applies
    ``W = 4 d^2 + m r d^2`` weights to each token (q, k, v, out; ``m`` = 2 MLP matrices
    with GELU, 3 with SwiGLU) and attends over all ``L`` tokens (``QK^T`` and ``AV``, 2 L^2 d
    multiply-adds each):

        blocks x (2 W L + 4 L^2 d) + 2 d (c_in N_img + c_txt N_txt + c_out N_img)

    the last term the patch, text and output projections (``c_in = c_out`` =
    ``in_channels``, ``c_txt`` = ``joint_attention_dim``). Per-image modulation, norms and
    RoPE are left out (under 0.1%). FLUX.1 [dev] at 1024^2 (4096 image + 512 text tokens,
    d = 3072, 57 blocks): 74.38 TFLOP; FLUX.2 [klein] 4B (25 blocks, SwiGLU r = 3): 34.82;
    tests/benchmarks/test_gpu_generate.py checks both against ``FlopCounterMode``.
    """
    d = config["num_attention_heads"] * config["attention_head_dim"]
    ratio = config.get("mlp_ratio", 4.0)  # FLUX.1's transformer fixes 4 (not in its config)
    weights = (4 + mlp_matrices * ratio) * d * d
    tokens = image_tokens + text_tokens
    blocks = config["num_layers"] + config["num_single_layers"]
    per_block = 2 * weights * tokens + 4 * tokens * tokens * d
    channels = config["in_channels"]
    projections = (
        2 * d * (2 * channels * image_tokens + config["joint_attention_dim"] * text_tokens)
    )
    return int(blocks * per_block + projections)


def linear_weights(module: Any) -> int:
    """Weights of ``module``'s linear layers: the multiply-adds it spends on each token."""
    import torch

    return sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))


def count_dit_flops(arch: DitArchitecture, pipe: Any, case: Case) -> Flops:
    """FLOPs of one transformer call over the batch (no CFG: guidance is embedded in
    FLUX.1 [dev], and distilled [klein] takes none), the VAE decode of the batch, and the
    prompt's encoding, once per call: ``2 x tokens x linear weights`` per text encoder
    (attention scores left out: under 5% of an encoder's, the encoders under 3% of the
    total)."""
    patch = 2 * pipe.vae_scale_factor  # 2x2 latent patches: one token per 16x16 pixels
    image_tokens = (case.height // patch) * (case.width // patch)
    config = dict(pipe.transformer.config)
    forward = dit_forward_flops(config, arch.mlp_matrices, image_tokens, arch.text_tokens)
    encode = sum(
        2 * encoder.tokens * linear_weights(getattr(pipe, name))
        for name, encoder in arch.text_encoders.items()
    )
    return Flops(case.n * forward, vae_decode_flops(pipe.vae, case), encode)


# ------------------------------------------------------------------------------ models


@dataclass(frozen=True)
class BenchModel:
    """How the benchmark builds, calls, counts and (where it can) serves one model."""

    family: str  # the ModelFamily (pipelines/families module) the engine asks
    denoiser: str  # the pipeline component that denoises
    build: Callable[[str, Any, bool], Any]  # (device, dtype, tiny) -> stock pipeline
    count: Callable[[Any, Case], Flops]  # (pipeline, case) -> the floor's FLOPs
    call_options: Mapping[str, Any]  # the plain diffusers call's model-specific arguments
    # Whether Kiln's engine runs this family; False prints "engine: not yet" (a model whose
    # family is still being built: set it to True once pipelines/families has it).
    engine: bool
    guidance: float  # the catalog entry's default, for the engine
    scheduler: str  # the catalog entry's default scheduler, for the engine
    styles: bool  # whether Kiln serves styles (LoRA) on it: the style switch is timed

    @property
    def negative_prompt(self) -> bool:
        return "negative_prompt" in self.call_options


def stable_diffusion(family: str) -> BenchModel:
    """An SD family: its UNet, classifier-free guidance with a negative prompt, Euler."""
    return BenchModel(
        family=family,
        denoiser="unet",
        build=functools.partial(build_pipeline, family),
        count=count_unet_flops,
        call_options={"negative_prompt": NEGATIVE, "guidance_scale": GUIDANCE},
        engine=True,
        guidance=GUIDANCE,
        scheduler="euler",
        styles=True,
    )


def flow_transformer(
    family: str, arch: DitArchitecture, guidance: float, engine: bool
) -> BenchModel:
    """A flow-matching transformer: no negative prompt, the prompt padded to the length
    the transformer reads, flow-matching Euler; styles hot-swapped into the transformer's
    compiled slot as on SD (issue 21)."""
    return BenchModel(
        family=family,
        denoiser="transformer",
        build=functools.partial(build_dit_pipeline, arch),
        count=functools.partial(count_dit_flops, arch),
        call_options={"guidance_scale": guidance, "max_sequence_length": arch.text_tokens},
        engine=engine,
        guidance=guidance,
        scheduler="flow_euler",
        styles=True,
    )


# FLUX.1 [dev]: guidance 3.5 is a conditioning value (one forward a step); distilled
# [klein] ignores guidance (1.0: diffusers warns above it).
MODELS: dict[str, BenchModel] = {
    "sdxl": stable_diffusion("sdxl"),
    "sd15": stable_diffusion("sd15"),
    "flux1-dev": flow_transformer("flux1", FLUX1_DEV, guidance=3.5, engine=True),
    "flux2-klein-4b": flow_transformer("flux2", FLUX2_KLEIN_4B, guidance=1.0, engine=True),
}


def measure(run: Callable[[int], Any], case: Case, device: str) -> Measurement:
    """Warm up with short calls, then time ``case.repeats`` full calls."""
    import torch

    cuda = torch.device(device).type == "cuda"
    for _ in range(WARMUP_CALLS if cuda else CPU_WARMUP_CALLS):
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
    """Stock diffusers usage: one prompt, ``num_images_per_prompt``, a seeded generator,
    the model's call options (guidance, negative prompt, prompt length)."""
    import torch

    options = MODELS[case.model].call_options

    def run(steps: int) -> Any:
        generator = torch.Generator(device).manual_seed(SEED)
        with torch.inference_mode():
            return pipe(
                prompt=PROMPT,
                **options,
                num_images_per_prompt=case.n,
                height=case.height,
                width=case.width,
                num_inference_steps=steps,
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


def random_lora_file(denoiser: Any, prefix: str, path: Path, seed: int, rank: int) -> Path:
    """A random rank-``rank`` LoRA on every attention projection of ``denoiser``
    (diffusers' key layout under ``prefix``: ``unet``, ``transformer``), written to
    ``path``: a style's cost does not depend on its values."""
    import torch
    from safetensors.torch import save_file

    from pipelines.style_adapters import SLOT_TARGETS

    generator = torch.Generator("cpu").manual_seed(seed)
    tensors = {}
    for name, module in denoiser.named_modules():
        if not name.endswith(SLOT_TARGETS):
            continue
        base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
        if not isinstance(base, torch.nn.Linear):
            continue
        a = torch.randn(rank, base.in_features, generator=generator) / base.in_features**0.5
        b = torch.randn(base.out_features, rank, generator=generator) * 0.01
        tensors[f"{prefix}.{name}.lora_A.weight"] = a.to(torch.bfloat16)
        tensors[f"{prefix}.{name}.lora_B.weight"] = b.to(torch.bfloat16)
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

    prefix = MODELS[case.model].denoiser
    denoiser = getattr(engine.pipe, prefix)
    styles = [
        StyleRef(f"bench_r{rank}_{i}", str(random_lora_file(
            denoiser, prefix, folder / f"style_{i}_r{rank}.safetensors", seed=i, rank=rank
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
        f"{case.model} style switch ({mode}, ranks {', '.join(map(str, STYLE_RANKS))}): "
        f"first load + swap median {statistics.median(loads) * 1e3:.1f} ms, switch between "
        f"loaded styles median {statistics.median(switches) * 1e3:.1f} ms "
        f"(max {max(switches) * 1e3:.1f} ms); {case.name} with a style {styled.median:.3f} s; "
        f"graphs compiled by style loads, switches and the styled calls: {recompiled}"
    )
    engine.styles.activate(None)


def fp8_compare(engine: Any, case: Case, device: str, bf16: Measurement, floor: float) -> None:
    """The same engine with FP8 denoiser matmuls: latency and the output's distance from bf16."""
    import numpy as np

    from pipelines.fast_path import FastPathError, quantize_fp8

    try:
        quantize_fp8(getattr(engine.pipe, MODELS[case.model].denoiser), engine.device)
    except FastPathError as exc:
        say(f"{case.model} fp8: skipped ({exc})")
        return
    started = time.perf_counter()
    try:
        fp8 = measure(kiln_runner(engine, case_params(engine, case)), case, device)
    except Exception as exc:  # noqa: BLE001 - the run's other figures must still print
        say(f"{case.model} fp8: failed after quantizing ({type(exc).__name__}: {exc})")
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


def engine_pending(model: BenchModel) -> str:
    """Why the engine does not run ``model`` here yet, and what turns it on."""
    from pipelines.families import FAMILIES

    if model.family in FAMILIES:
        return f"the {model.family} family has landed: set engine=True on its MODELS entry"
    return f"no {model.family} family in pipelines/families yet"


def run_model(
    name: str,
    cases: Sequence[Case],
    device: str,
    dtype: Any,
    tiny: bool,
    config: RunConfig,
    rate: float,
    elapsed: Callable[[], float],
) -> dict[str, tuple]:
    """Time one model's cases, plain then Kiln where its engine runs the family."""
    import tempfile

    import torch

    model = MODELS[name]
    cuda = torch.device(device).type == "cuda"
    started = time.perf_counter()
    pipe = model.build(device, dtype, tiny)
    params = sum(p.numel() for p in getattr(pipe, model.denoiser).parameters())
    say(
        f"{name}: built in {time.perf_counter() - started:.1f} s "
        f"({model.denoiser} {params / 1e6:.1f}M parameters)"
    )
    # Plain first for every case: what the fast path changes on the shared modules
    # (compiled blocks, the style slot) must not leak into the plain runs.
    floors: dict[Case, float] = {}
    plain: dict[Case, Measurement] = {}
    for case in cases:
        flops = model.count(pipe, case)
        total = flops.total(case.steps)
        floors[case] = total / rate
        encode = f", text encoders {flops.encode / 1e12:.4g} TFLOP" if flops.encode else ""
        say(
            f"{case.name}: {model.denoiser} call {flops.denoiser_call / 1e12:.4g} TFLOP, "
            f"VAE decode {flops.decode / 1e12:.4g} TFLOP{encode}, total "
            f"{total / 1e12:.4g} TFLOP, compute floor {floors[case]:.3f} s"
        )
        plain[case] = measure(plain_runner(pipe, case, device), case, device)
        say(report("plain", plain[case], floors[case], None))
    results: dict[str, tuple] = {}
    if not model.engine:
        reason = engine_pending(model)
        for case in cases:
            say(f"  {'kiln':<6} {case.name}: engine: not yet ({reason})")
            results[case.name] = (plain[case], None, floors[case])
        return results
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    engine, fast = kiln_engine(model, pipe, cases, config.fast_path, config.warmup_batch)
    if fast is not None:
        say(
            f"{name} fast path: {time.perf_counter() - started:.1f} s to apply "
            f"(compile set-up {fast.compile_s:.1f} s, warm-up with compiling "
            f"{fast.warmup_s:.1f} s over {fast.warmup_calls} calls); {fast.summary()}"
        )
    first: Measurement | None = None
    for case in cases:
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
    if config.styles and model.styles:
        with tempfile.TemporaryDirectory(prefix="kiln-bench-styles-") as folder:
            style_switch(engine, cases[0], device, Path(folder))
    if config.fp8 and first is not None:
        if elapsed() > 0.6 * config.budget_s:
            say(f"{name} fp8: skipped ({elapsed():.0f} s used: its recompile would not fit)")
        else:
            fp8_compare(engine, cases[0], device, first, floors[cases[0]])
    return results


def run_cases(
    cases: Sequence[Case], device: str, dtype: Any, tiny: bool, config: RunConfig
) -> tuple[dict[str, tuple], list[str]]:
    """Time every case, model by model, printing as it goes; returns the figures by case
    name, and the models that failed (a failure is printed and the run goes on: one
    model's error must not cost the others' figures in a short device budget)."""
    import gc

    import torch

    cuda = torch.device(device).type == "cuda"
    run_started = time.perf_counter()
    size, iterations = (8192, 50) if cuda else (512, 5)
    rate = matmul_rate(device, dtype, size, iterations)
    say(f"matmul {size}^3 {str(dtype).removeprefix('torch.')}: {rate / 1e12:.4g} TFLOP/s")

    def elapsed() -> float:
        return time.perf_counter() - run_started

    results: dict[str, tuple] = {}
    failed: list[str] = []
    for name in dict.fromkeys(c.model for c in cases):
        if (results or failed) and elapsed() > 0.8 * config.budget_s:
            say(f"{name}: skipped ({elapsed():.0f} s used of the {config.budget_s:.0f} s budget)")
            continue
        model_cases = [c for c in cases if c.model == name]
        try:
            results.update(run_model(name, model_cases, device, dtype, tiny, config, rate, elapsed))
        except Exception as exc:  # noqa: BLE001 - the other models' figures must still print
            say(f"{name}: failed ({type(exc).__name__}: {exc})\n{traceback.format_exc()}")
            failed.append(name)
        gc.collect()  # the model's modules go before the next one is built
        if cuda:
            torch.cuda.empty_cache()
    return results, failed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="FLUX.1 [dev] + SDXL n=1 (< 6 min)")
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
        # Skip what would pass the GPU budget (9 min full, 6 min quick); a smoke run does all.
        budget_s=math.inf if args.tiny else 360.0 if args.quick else 540.0,
        warmup_batch=any(c.n > 1 for c in cases),
    )
    # Random weights can overflow to NaN images; their cost is the same, the cast warns.
    warnings.filterwarnings("ignore", message="invalid value encountered in cast")
    started = time.perf_counter()
    results, failed = run_cases(cases, args.device, dtype, args.tiny, config)
    say(f"summary ({time.perf_counter() - started:.0f} s):")
    for case_name, (plain, kiln, floor) in results.items():
        line = f"  {case_name}: plain {plain.median:.3f} s ({plain.images_per_s:.3f} img/s), "
        if kiln is None:
            line += (
                f"engine: not yet, floor {floor:.3f} s (plain at {floor / plain.median:.1%} of it)"
            )
        else:
            line += (
                f"kiln {kiln.median:.3f} s ({kiln.images_per_s:.3f} img/s): "
                f"{plain.median / kiln.median:.2f}x faster, floor {floor:.3f} s "
                f"(kiln at {floor / kiln.median:.1%} of it)"
            )
        say(line)
    if failed:
        say(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
