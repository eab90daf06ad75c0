"""Every environment variable Kiln reads, declared in one place and read lazily.

As vLLM's ``envs.py``: the table ``ENV_VARS`` names each variable, its parser and its
default; ``Settings.from_env()`` reads them when called (never at import) into one frozen,
picklable object that the CLI, the app builder and every Ray replica share.

Unset means "the default": an empty string counts as unset, so ``KILN_PORT=`` in a
Compose file does not break parsing.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.content_credentials import C2paSigner
from pipelines.fast_path import DEFAULT_TILE_MIN_PIXELS
from pipelines.params import GenerationDefaults
from weights.home import private_dir

if TYPE_CHECKING:
    from pipelines.fast_path import FastPathOptions

DEVICES = ("auto", "cpu", "cuda")
SECRET_FILE = "secret.key"
# The shortest KILN_SECRET or KILN_ADMIN_KEY Kiln accepts.
MIN_KEY_CHARS = 32


class SettingsError(ValueError):
    """An environment variable (or builder argument) with a value Kiln cannot use."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must not be negative, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError(f"must not be negative, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"must be positive, got {value}")
    return value


def _adapter_scale(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 2.0:
        raise ValueError(f"must be an IP-Adapter scale (0-2), got {value}")
    return value


def _compile_choice(text: str) -> str:
    if text not in ("auto", "on", "off"):
        raise ValueError(f"must be auto, on or off, got {text!r}")
    return text


def _vae_dtype(text: str) -> str:
    if text not in ("auto", "fp32"):
        raise ValueError(f"must be auto or fp32, got {text!r}")
    return text


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"must be a TCP port (0-65535), got {value}")
    return value


def _device(text: str) -> str:
    if text not in DEVICES and not text.startswith("cuda:"):
        raise ValueError(f"must be one of {', '.join(DEVICES)} (or cuda:N), got {text!r}")
    return text


def _path(text: str) -> Path:
    return Path(text).expanduser()


FLAG_WORDS = {"1": True, "true": True, "yes": True, "on": True}
FLAG_WORDS |= {"0": False, "false": False, "no": False, "off": False}


def _flag(text: str) -> bool:
    """An on/off switch: 1/true/yes/on or 0/false/no/off (any case)."""
    try:
        return FLAG_WORDS[text.lower()]
    except KeyError:
        words = ", ".join(FLAG_WORDS)
        raise ValueError(f"must be one of {words}; got {text!r}") from None


@dataclass(frozen=True)
class EnvVar:
    """One environment variable: the settings field it fills, how to parse it, what it does."""

    name: str
    field: str
    parse: Callable[[str], Any]
    help: str


# The single declaration of Kiln's environment. A field whose variable is unset keeps the
# dataclass default below (None where the default depends on other settings or the machine).
ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar("KILN_HOME", "home", _path, "models, files, secret key (default ~/.kiln)"),
    EnvVar("KILN_HOST", "host", str, "address to listen on (default 127.0.0.1)"),
    EnvVar("KILN_PORT", "port", _port, "HTTP port (default 8000)"),
    EnvVar("KILN_CATALOG", "catalog_file", _path, "extra models.toml (default KILN_HOME/…)"),
    EnvVar("KILN_DEVICE", "device", _device, "auto | cpu | cuda (default auto)"),
    EnvVar(
        "KILN_GPUS_PER_REPLICA", "gpus_per_replica", _non_negative_float,
        "GPUs per model replica, may be fractional (default: 1 with CUDA, an equal share "
        "when models outnumber GPUs; 0 on CPU)",
    ),
    EnvVar(
        "KILN_REPLICA_CPUS", "replica_cpus", _non_negative_float,
        "Ray CPUs per model replica, may be fractional (default 0.25)",
    ),
    EnvVar("KILN_INGRESS_CPUS", "ingress_cpus", _non_negative_float, "CPUs of the HTTP ingress"),
    EnvVar("KILN_TORCH_THREADS", "torch_threads", _positive_int, "torch threads per replica"),
    EnvVar("KILN_RAY_NUM_CPUS", "ray_num_cpus", _positive_int, "CPUs of a local Ray"),
    EnvVar("KILN_RAY_ADDRESS", "ray_address", str, "join this Ray cluster instead"),
    EnvVar("KILN_MAX_BATCH_SIZE", "max_batch_size", _positive_int, "images per shared call"),
    EnvVar("KILN_BATCH_WAIT_S", "batch_wait_s", _non_negative_float, "batch fill wait"),
    EnvVar("KILN_MAX_QUEUED", "max_queued", _positive_int, "queued requests per model"),
    EnvVar("KILN_URL_TTL_S", "url_ttl_s", _positive_int, "lifetime of signed file URLs"),
    EnvVar("KILN_SECRET", "secret", str, "HMAC key for file URLs (default KILN_HOME/…)"),
    EnvVar("KILN_PUBLIC_URL", "public_url", str, "base URL for signed links"),
    EnvVar("KILN_MAX_PROMPT_CHARS", "max_prompt_chars", _positive_int, "longest prompt"),
    EnvVar("KILN_DEFAULT_STEPS", "default_steps", _positive_int, "steps unless asked"),
    EnvVar("KILN_DEFAULT_GUIDANCE", "default_guidance", _non_negative_float, "guidance"),
    EnvVar("KILN_DEFAULT_SCHEDULER", "default_scheduler", str, "scheduler unless asked"),
    EnvVar("KILN_DATABASE_URL", "database", str, "ledger DB URL (default KILN_HOME/kiln.db)"),
    EnvVar("KILN_ADMIN_KEY", "admin_key", str, "the admin API key (default: generated once)"),
    EnvVar(
        "KILN_TENANT_MAX_CONCURRENT", "tenant_max_concurrent", _positive_int,
        "generation requests a tenant may have running at once, across all ingress replicas "
        "(counted in the database; default: no cap)",
    ),
    EnvVar(
        "KILN_ASSET_RETENTION_DAYS", "asset_retention_days", _positive_int,
        "delete unlicensed assets older than this many days (default: keep them)",
    ),
    EnvVar(
        "KILN_C2PA_CERT", "c2pa_cert", _path,
        "PEM certificate chain (leaf first) to sign C2PA manifests with (default: none)",
    ),
    EnvVar("KILN_C2PA_KEY", "c2pa_key", _path, "PEM private key of KILN_C2PA_CERT"),
    EnvVar("KILN_C2PA_ALG", "c2pa_alg", str, "C2PA signing algorithm (default es256)"),
    EnvVar(
        "KILN_STYLES_PER_REPLICA", "styles_per_replica", _positive_int,
        "LoRA styles a model replica keeps loaded, least recently used out (default 8)",
    ),
    EnvVar(
        "KILN_STYLE_MAX_BYTES", "style_max_bytes", _positive_int,
        "largest LoRA file a style import accepts, in bytes (default 256 MiB)",
    ),
    EnvVar(
        "KILN_STYLE_MAX_RANK", "style_max_rank", _positive_int,
        "highest LoRA rank a style may have; also the GPU fast path's LoRA hotswap target "
        "rank, so every style swaps into a compiled model (default 64)",
    ),
    EnvVar(
        "KILN_PIN_SCALE_CHARACTER", "pin_scale_character", _adapter_scale,
        "IP-Adapter scale of a character pin in a generation, 0-2 (default 0.7)",
    ),
    EnvVar(
        "KILN_PIN_SCALE_PRODUCT", "pin_scale_product", _adapter_scale,
        "IP-Adapter scale of a product pin in a generation, 0-2 (default 0.6)",
    ),
    EnvVar(
        "KILN_TRAINING_STEPS", "training_steps", _positive_int,
        "optimizer steps of a style training that does not ask (default 500)",
    ),
    EnvVar(
        "KILN_TRAINING_MAX_STEPS", "training_max_steps", _positive_int,
        "most steps a style training may ask for (default 5000)",
    ),
    EnvVar("KILN_TRAINING_RANK", "training_rank", _positive_int, "LoRA rank trained (default 8)"),
    EnvVar(
        "KILN_TRAINING_LEARNING_RATE", "training_learning_rate", _positive_float,
        "AdamW learning rate of style training (default 1e-4, diffusers' recipe)",
    ),
    EnvVar(
        "KILN_TRAINING_CPUS", "training_cpus", _non_negative_float,
        "CPUs of a training job's Ray task, may be fractional (default 0.5)",
    ),
    EnvVar(
        "KILN_TRAINING_GPUS", "training_gpus", _non_negative_float,
        "GPUs of a training job's Ray task (default: 1 where the cluster has one, else 0)",
    ),
    EnvVar(
        "KILN_TRAINING_IMAGE_MAX_BYTES", "training_image_max_bytes", _positive_int,
        "largest training image upload, in bytes, checked before decoding (default 20 MiB)",
    ),
    EnvVar(
        "KILN_TRAINING_IMAGE_MAX_PIXELS", "training_image_max_pixels", _positive_int,
        "most pixels (width x height) of a training image, checked before decompressing "
        "(default 40 megapixels)",
    ),
    EnvVar(
        "KILN_AGENTIC_MAX_CANDIDATES", "agentic_max_candidates", _positive_int,
        "most candidates an agentic generation may ask per kept image (default 4)",
    ),
    EnvVar(
        "KILN_AGENTIC_MAX_ROUNDS", "agentic_max_rounds", _non_negative_int,
        "most refinement rounds an agentic generation may ask (default 3)",
    ),
    EnvVar(
        "KILN_IMAGE_MAX_BYTES", "image_max_bytes", _positive_int,
        "largest input image (edits, references, pins, image-to-prompt, agentic), in bytes, "
        "checked before decoding (default 20 MiB)",
    ),
    EnvVar(
        "KILN_IMAGE_MAX_PIXELS", "image_max_pixels", _positive_int,
        "most pixels of an input image, checked before decompressing (default 40 megapixels)",
    ),
    EnvVar(
        "KILN_CLIP_GPUS", "clip_gpus", _non_negative_float,
        "GPU share of the image-to-prompt CLIP replica; 0 (default) runs it on CPU",
    ),
    EnvVar(
        "KILN_OOM_RETRY", "oom_retry", _flag,
        "retry a call that runs out of GPU memory with half the images, down to one "
        "(default on)",
    ),
    EnvVar(
        "KILN_OOM_MAX_FAILURES", "oom_max_failures", _positive_int,
        "calls in a row that run out of GPU memory even at one image before the replica "
        "reports unhealthy and Ray Serve replaces it (default 3)",
    ),
    EnvVar(
        "KILN_MODEL_MIN_REPLICAS", "model_min_replicas", _non_negative_int,
        "fewest replicas of each model deployment; 0 scales an idle model to zero and "
        "loads it on first use (default 1; models.toml min_replicas overrides per model)",
    ),
    EnvVar(
        "KILN_MODEL_MAX_REPLICAS", "model_max_replicas", _positive_int,
        "most replicas of each model deployment, added under load (default 1; "
        "models.toml max_replicas overrides per model)",
    ),
    EnvVar(
        "KILN_MODEL_IDLE_S", "model_idle_s", _non_negative_float,
        "seconds a model replica may sit idle before the autoscaler removes it, down to "
        "min_replicas (default 300)",
    ),
    EnvVar(
        "KILN_BATCH_MAX_BYTES", "batch_max_bytes", _positive_int,
        "largest JSONL upload of POST /v1/batches, in bytes, checked before it is read "
        "(default 64 MiB)",
    ),
    EnvVar(
        "KILN_BATCH_MAX_LINES", "batch_max_lines", _positive_int,
        "most request lines in one POST /v1/batches upload (default 10000)",
    ),
    # Request bodies (serving/body_limits.py): read only after the caller is known, and
    # counted while they stream, at the Serve proxy and in the app.
    EnvVar(
        "KILN_BODY_MAX_JSON", "body_max_json", _positive_int,
        "largest JSON request body (generations, edits, agentic, pins, image-to-prompt, "
        "admin, ...), in bytes (default 64 MiB)",
    ),
    EnvVar(
        "KILN_BODY_MAX_IMAGES", "body_max_images", _positive_int,
        "largest multipart image upload (POST /v1/images/edits, /v1/images/variations), "
        "in bytes (default 64 MiB)",
    ),
    EnvVar(
        "KILN_BODY_MAX_STYLE", "body_max_style", _positive_int,
        "largest POST /v1/styles upload, in bytes (default: KILN_STYLE_MAX_BYTES + 1 MiB)",
    ),
    EnvVar(
        "KILN_BODY_MAX_TRAINING", "body_max_training", _positive_int,
        "largest POST /v1/styles/train upload, in bytes (default: 50 images of "
        "KILN_TRAINING_IMAGE_MAX_BYTES + 1 MiB)",
    ),
    EnvVar(
        "KILN_MULTIPART_MAX_PARTS", "multipart_max_parts", _positive_int,
        "most parts (files and fields) in one multipart request (default 128)",
    ),
    EnvVar(
        "KILN_SVG_MAX_CONCURRENT", "svg_max_concurrent", _positive_int,
        "SVG traces one ingress process runs at once; more answer 429 (default 2)",
    ),
    EnvVar(
        "KILN_EVENT_STREAMS_PER_TENANT", "event_streams_per_tenant", _positive_int,
        "open GET /v1/jobs/{id}/events streams a tenant may hold per ingress process; more "
        "answer 429 (default 32)",
    ),
    EnvVar(
        "KILN_RESERVATION_LEASE_S", "reservation_lease_s", _positive_float,
        "seconds a credit reservation stays held without a renewal; the request or job "
        "holding it renews it while alive, and the sweeper releases expired ones "
        "(default 600)",
    ),
    EnvVar(
        "KILN_STYLE_IMPORTS_MAX", "style_imports_max", _positive_int,
        "most private styles a tenant may import (default 50)",
    ),
    EnvVar(
        "KILN_STYLE_IMPORTS_MAX_BYTES", "style_imports_max_bytes", _positive_int,
        "most bytes of private style files a tenant may keep (default 2 GiB)",
    ),
    # The GPU fast path (pipelines/fast_path.py): each optimisation's off switch.
    EnvVar(
        "KILN_COMPILE", "compile", _compile_choice,
        "torch.compile the denoiser by repeated block: auto (on CUDA only), on, off",
    ),
    EnvVar("KILN_COMPILE_BACKEND", "compile_backend", str, "torch.compile backend (inductor)"),
    EnvVar("KILN_COMPILE_MODE", "compile_mode", str, "torch.compile mode (default: none)"),
    EnvVar("KILN_CUDA_GRAPHS", "cuda_graphs", _flag, "CUDA graphs (reduce-overhead; off)"),
    EnvVar(
        "KILN_FUSED_QKV", "fused_qkv", _flag,
        "fused QKV projections; only for models that serve no styles, which it then "
        "refuses (default off)",
    ),
    EnvVar(
        "KILN_CHANNELS_LAST", "channels_last", _flag,
        "channels-last memory layout (default off: measured slower on an H200)",
    ),
    EnvVar(
        "KILN_VAE_TILE_MIN_PIXELS", "vae_tile_min_pixels", _non_negative_int,
        "decode images above this many pixels in tiles; 0: never (default 1536x1536)",
    ),
    EnvVar(
        "KILN_VAE_DTYPE", "vae_dtype", _vae_dtype,
        "auto (the serving dtype; fp32 for SDXL under fp16) or fp32",
    ),
    EnvVar("KILN_FA3", "fa3", _flag, "Flash-Attention 3 where torch has it, Hopper (on)"),
    EnvVar(
        "KILN_FP8", "fp8", _flag,
        "FP8 matmuls in the UNet through torchao; needs compute capability 8.9+ (off)",
    ),
    EnvVar(
        "KILN_WARMUP", "warmup", _flag,
        "warm up (and compile) at every catalog size when a replica starts (default on)",
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """Kiln's configuration, resolved once. Frozen and picklable: it travels to replicas."""

    home: Path = field(default_factory=lambda: Path("~/.kiln").expanduser())
    host: str = "127.0.0.1"
    port: int = 8000
    catalog_file: Path | None = None
    device: str = "auto"
    gpus_per_replica: float | None = None
    # A quarter: Ray schedules by these logical CPUs, and a 2-core workstation must fit a
    # replica per model (base, instruct, CLIP ...) plus a training task; torch's own
    # thread count (KILN_TORCH_THREADS) is what uses the cores.
    replica_cpus: float = 0.25
    ingress_cpus: float = 0.1
    torch_threads: int | None = None
    ray_num_cpus: int | None = None
    ray_address: str | None = None
    max_batch_size: int = 8
    batch_wait_s: float = 0.02
    max_queued: int = 512
    url_ttl_s: int = 3600
    # repr=False: settings get logged; the key must not be.
    secret: str | None = field(default=None, repr=False)
    public_url: str | None = None
    max_prompt_chars: int = 4000
    default_steps: int | None = None
    default_guidance: float | None = None
    default_scheduler: str | None = None
    # repr=False: a PostgreSQL URL may carry a password.
    database: str | None = field(default=None, repr=False)
    admin_key: str | None = field(default=None, repr=False)
    tenant_max_concurrent: int | None = None
    asset_retention_days: int | None = None
    c2pa_cert: Path | None = None
    c2pa_key: Path | None = None
    c2pa_alg: str = "es256"
    styles_per_replica: int = 8
    style_max_bytes: int = 256 * 1024 * 1024
    style_max_rank: int = 64
    pin_scale_character: float = 0.7
    pin_scale_product: float = 0.6
    training_steps: int = 500
    training_max_steps: int = 5000
    training_rank: int = 8
    training_learning_rate: float = 1e-4
    training_cpus: float = 0.5
    training_gpus: float | None = None
    training_image_max_bytes: int = 20 * 1024 * 1024
    training_image_max_pixels: int = 40_000_000
    agentic_max_candidates: int = 4
    agentic_max_rounds: int = 3
    image_max_bytes: int = 20 * 1024 * 1024
    image_max_pixels: int = 40_000_000
    clip_gpus: float = 0.0
    oom_retry: bool = True
    oom_max_failures: int = 3
    model_min_replicas: int = 1
    model_max_replicas: int = 1
    model_idle_s: float = 300.0
    batch_max_bytes: int = 64 * 1024 * 1024
    batch_max_lines: int = 10_000
    body_max_json: int = 64 * 1024 * 1024
    body_max_images: int = 64 * 1024 * 1024
    body_max_style: int | None = None
    body_max_training: int | None = None
    multipart_max_parts: int = 128
    svg_max_concurrent: int = 2
    event_streams_per_tenant: int = 32
    reservation_lease_s: float = 600.0
    style_imports_max: int = 50
    style_imports_max_bytes: int = 2 * 1024 * 1024 * 1024
    compile: str = "auto"
    compile_backend: str = "inductor"
    compile_mode: str | None = None
    cuda_graphs: bool = False
    fused_qkv: bool = False
    channels_last: bool = False
    vae_tile_min_pixels: int = DEFAULT_TILE_MIN_PIXELS
    vae_dtype: str = "auto"
    fa3: bool = True
    fp8: bool = False
    warmup: bool = True

    def __post_init__(self) -> None:
        # A short key is guessable: refuse it at start rather than sign URLs or admit an
        # admin with it. Unset or empty still means "generate one" (43 random characters).
        for name, value in (("KILN_SECRET", self.secret), ("KILN_ADMIN_KEY", self.admin_key)):
            if value and len(value) < MIN_KEY_CHARS:
                raise SettingsError(
                    f"{name} is {len(value)} characters, shorter than {MIN_KEY_CHARS}: "
                    f"set a longer random value, or leave it unset to have one generated"
                )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``ENV_VARS`` from ``environ`` (default ``os.environ``), then apply overrides.

        Overrides are field names (``port=9000``), parsed and checked as the variable
        would be, so a Serve YAML's ``args`` can carry them as strings or numbers.
        """
        environ = os.environ if environ is None else environ
        by_field = {var.field: var for var in ENV_VARS}
        values: dict[str, Any] = {}
        for var in ENV_VARS:
            raw = environ.get(var.name, "")
            if raw.strip():
                values[var.field] = _parse(var, raw.strip(), var.name)
        for name, value in overrides.items():
            if name not in by_field:
                known = ", ".join(sorted(by_field))
                raise SettingsError(f"unknown setting {name!r}; known: {known}")
            if value is not None:
                # Typed values (a YAML int) go through the same parser and checks.
                value = _parse(by_field[name], str(value).strip(), name)
            values[name] = value
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with some fields replaced (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def catalog_path(self) -> Path:
        """The extra catalog file: ``KILN_CATALOG`` or ``KILN_HOME/models.toml``."""
        return self.catalog_file if self.catalog_file is not None else self.home / "models.toml"

    @property
    def files_dir(self) -> Path:
        """Where images behind signed URLs are kept."""
        return self.home / "files"

    @property
    def styles_dir(self) -> Path:
        """Where LoRA style files are kept, by SHA-256 (a shared mount on a cluster)."""
        return self.home / "styles"

    @property
    def jobs_dir(self) -> Path:
        """Where running jobs keep their inputs and partial work, one folder per job (a
        shared mount on a cluster: the worker may run on another node)."""
        return self.home / "jobs"

    def effective_training_gpus(self, cluster_gpus: float) -> float:
        """GPUs of a training task: ``KILN_TRAINING_GPUS``, else 1 where the cluster has
        one (and the device is not forced to the CPU), else 0."""
        if self.training_gpus is not None:
            return self.training_gpus
        if self.device == "cpu":
            return 0.0
        return 1.0 if cluster_gpus >= 1 else 0.0

    @property
    def assets_dir(self) -> Path:
        """Where asset files are kept, by SHA-256 (a shared mount on a cluster)."""
        return self.home / "assets"

    def c2pa_signer(self) -> C2paSigner | None:
        """The C2PA signing credentials, or None when no certificate is configured.

        Raises ``SettingsError`` when only one of certificate and key is set, or either
        cannot be read or used, so a misconfigured server fails at start, not per image.
        """
        if self.c2pa_cert is None and self.c2pa_key is None:
            return None
        if self.c2pa_cert is None or self.c2pa_key is None:
            raise SettingsError("KILN_C2PA_CERT and KILN_C2PA_KEY must be set together")
        try:
            return C2paSigner.from_files(self.c2pa_cert, self.c2pa_key, self.c2pa_alg)
        except (OSError, ValueError) as exc:
            raise SettingsError(f"C2PA signing credentials: {exc}") from None

    @property
    def database_url(self) -> str:
        """The ledger's SQLAlchemy URL: ``KILN_DATABASE_URL`` or SQLite in ``KILN_HOME``."""
        return self.database or f"sqlite:///{self.home / 'kiln.db'}"

    @property
    def engine_device(self) -> str | None:
        """The device argument for ``Engine.load``: ``None`` lets the engine pick."""
        return None if self.device == "auto" else self.device

    @property
    def generation_defaults(self) -> GenerationDefaults:
        """Server-wide defaults between the request and the model's catalog defaults."""
        return GenerationDefaults(
            steps=self.default_steps,
            guidance=self.default_guidance,
            scheduler=self.default_scheduler,
        )

    def effective_ray_num_cpus(self) -> int:
        """CPUs a local Ray gets: ``KILN_RAY_NUM_CPUS`` or this machine's core count."""
        return self.ray_num_cpus or os.cpu_count() or 1

    def effective_torch_threads(self) -> int:
        """Torch threads in a replica: ``KILN_TORCH_THREADS``, else the node's cores - 1.

        One core is left to the ingress and Ray's own processes: a torch op waits for
        its slowest thread, so one preempted thread stalls them all (on 2 cores the
        tiny model ran faster in a replica with 1 thread than with 2). Set explicitly
        because Ray sets ``OMP_NUM_THREADS=1`` in fractional-CPU actors.
        """
        return self.torch_threads or max(1, (os.cpu_count() or 1) - 1)

    def effective_gpus_per_replica(self, cluster_gpus: float, deployments: int = 1) -> float:
        """GPUs per model replica: ``KILN_GPUS_PER_REPLICA``, else 0 on CPU, else 1.

        With fewer GPUs than model deployments (one workstation card, two models) the
        default becomes an equal share of the cluster's GPUs: with a whole GPU each,
        Ray could never place the rest and ``kiln serve`` would wait forever.
        """
        if self.gpus_per_replica is not None:
            return self.gpus_per_replica
        if self.device == "cpu":
            return 0.0
        if cluster_gpus > 0:
            return min(1.0, cluster_gpus / max(1, deployments))
        # No GPU seen (a builder on a CPU-only head node): trust an explicit cuda.
        return 1.0 if self.device.startswith("cuda") else 0.0

    @property
    def clip_device(self) -> str:
        """Where the image-to-prompt CLIP runs: ``cuda`` when it is given a GPU share."""
        return "cuda" if self.clip_gpus > 0 else "cpu"

    def fast_path(self) -> FastPathOptions:
        """The engine's GPU fast-path options; the LoRA hotswap rank is the style rank
        limit, so every style a replica accepts fits the compiled slot."""
        from pipelines.fast_path import FastPathOptions

        return FastPathOptions(
            compile=self.compile,
            compile_backend=self.compile_backend,
            compile_mode=self.compile_mode,
            cuda_graphs=self.cuda_graphs,
            fused_qkv=self.fused_qkv,
            channels_last=self.channels_last,
            vae_tile_min_pixels=self.vae_tile_min_pixels,
            vae_dtype=self.vae_dtype,
            fa3=self.fa3,
            fp8=self.fp8,
            warmup=self.warmup,
            lora_hotswap_rank=self.style_max_rank,
        )

    def effective_secret(self) -> str:
        """``KILN_SECRET``, else the key in ``KILN_HOME/secret.key`` (created once, 0600)."""
        if self.secret:
            return self.secret
        return load_or_create_secret(self.home / SECRET_FILE)


def _parse(var: EnvVar, raw: str, label: str) -> Any:
    try:
        return var.parse(raw)
    except ValueError as exc:
        raise SettingsError(f"{label}={raw!r}: {exc}") from None


def load_or_create_secret(path: Path) -> str:
    """Read the key at ``path``; create it (mode 0600) if missing, race-free.

    The key is written to a private temp file and hard-linked into place, so two
    processes starting at once agree on one key and nobody reads a half-written file.
    """
    if path.exists():
        return path.read_text().strip()
    private_dir(path.parent)  # may be the first thing Kiln makes of KILN_HOME: 0700
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        # Losing the race is fine: the winner's key is read back below.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()


def setting_names() -> list[str]:
    """Field names that builder ``args`` and overrides may use."""
    return [f.name for f in fields(Settings)]
