"""Every environment variable Kiln reads, each declared once, and read lazily.

As vLLM's ``envs.py``, one declaration per variable; here it is the ``Settings`` field it
fills (``pipelines/env_fields.py``: ``env_field`` gives the name, parser and help, the
field its type and default). Serving's variables are declared below; the GPU fast path's
in ``pipelines/fast_path.py`` (``FastPathSwitches``, which ``Settings`` inherits: the
pipelines may not import serving). ``ENV_VARS`` is derived from the fields, the README's
configuration table from ``ENV_VARS`` (``serving/core/settings_table.py``).
``Settings.from_env()`` reads them when called (never at import) into one frozen,
picklable object that the CLI, the app builder and every Ray replica share.

Unset means "the default": an empty string counts as unset, so ``KILN_PORT=`` in a
Compose file does not break parsing.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from pipelines.content_credentials import C2paSigner
from pipelines.env_fields import (
    EnvVar,
    env_field,
    env_vars,
    flag,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from pipelines.fast_path import FastPathOptions, FastPathSwitches
from pipelines.params import GenerationDefaults
from weights.home import private_dir

DEVICES = ("auto", "cpu", "cuda")
SECRET_FILE = "secret.key"
# The shortest KILN_SECRET or KILN_ADMIN_KEY Kiln accepts.
MIN_KEY_CHARS = 32


class SettingsError(ValueError):
    """An environment variable (or builder argument) with a value Kiln cannot use."""


def _adapter_scale(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 2.0:
        raise ValueError(f"must be an IP-Adapter scale (0-2), got {value}")
    return value


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


@dataclass(frozen=True)
class Settings(FastPathSwitches):
    """Kiln's configuration, resolved once. Frozen and picklable: it travels to replicas.

    Each field is the one declaration of its environment variable (``env_field``: name,
    parser, help; the annotation and default are the field's). The GPU fast path's
    variables are declared in ``pipelines/fast_path.py`` (``FastPathSwitches``) and
    inherited, so ``fields(Settings)`` lists the fast path's first, then serving's.
    """

    # fmt: off
    home: Path = env_field(
        "KILN_HOME", default_factory=lambda: Path("~/.kiln").expanduser(), parse=_path,
        help="models, files, secret key (default ~/.kiln)",
    )
    host: str = env_field(
        "KILN_HOST", "127.0.0.1", parse=str,
        help="address to listen on (default 127.0.0.1)",
    )
    port: int = env_field("KILN_PORT", 8000, parse=_port, help="HTTP port (default 8000)")
    catalog_file: Path | None = env_field(
        "KILN_CATALOG", None, parse=_path,
        help="extra models.toml (default KILN_HOME/…)",
    )
    device: str = env_field(
        "KILN_DEVICE", "auto", parse=_device,
        help="auto / cpu / cuda / cuda:N (default auto)",
    )
    gpus_per_replica: float | None = env_field(
        "KILN_GPUS_PER_REPLICA", None, parse=non_negative_float,
        help="GPUs per model replica, may be fractional (default: 1 with CUDA, an equal share "
        "when models outnumber GPUs; 0 on CPU)",
    )
    # A quarter: Ray schedules by these logical CPUs, and a 2-core workstation must fit a
    # replica per model (base, instruct, CLIP ...) plus a training task; torch's own
    # thread count (KILN_TORCH_THREADS) is what uses the cores.
    replica_cpus: float = env_field(
        "KILN_REPLICA_CPUS", 0.25, parse=non_negative_float,
        help="Ray CPUs per model replica, may be fractional (default 0.25)",
    )
    ingress_cpus: float = env_field(
        "KILN_INGRESS_CPUS", 0.1, parse=non_negative_float,
        help="Ray CPUs of the HTTP ingress, may be fractional (default 0.1)",
    )
    torch_threads: int | None = env_field(
        "KILN_TORCH_THREADS", None, parse=positive_int,
        help="torch threads per replica (default: the node's cores less one)",
    )
    ray_num_cpus: int | None = env_field(
        "KILN_RAY_NUM_CPUS", None, parse=positive_int,
        help="CPUs of a local Ray (default: this machine's cores)",
    )
    ray_address: str | None = env_field(
        "KILN_RAY_ADDRESS", None, parse=str,
        help="join this Ray cluster instead of starting a local one",
    )
    max_batch_size: int = env_field(
        "KILN_MAX_BATCH_SIZE", 8, parse=positive_int,
        help="images per shared pipeline call (default 8)",
    )
    batch_wait_s: float = env_field(
        "KILN_BATCH_WAIT_S", 0.02, parse=non_negative_float,
        help="seconds a batch waits to fill (default 0.02)",
    )
    max_queued: int = env_field(
        "KILN_MAX_QUEUED", 512, parse=positive_int,
        help="queued requests per model (default 512)",
    )
    url_ttl_s: int = env_field(
        "KILN_URL_TTL_S", 3600, parse=positive_int,
        help="lifetime of signed file URLs, in seconds (default 3600)",
    )
    # repr=False: settings get logged; the keys must not be.
    secret: str | None = env_field(
        "KILN_SECRET", None, repr=False, parse=str,
        help="HMAC key for file URLs, at least 32 characters (unset or empty: generated once "
        "into KILN_HOME/secret.key)",
    )
    public_url: str | None = env_field(
        "KILN_PUBLIC_URL", None, parse=str,
        help="base URL for signed links",
    )
    max_prompt_chars: int = env_field(
        "KILN_MAX_PROMPT_CHARS", 4000, parse=positive_int,
        help="longest prompt, in characters (default 4000)",
    )
    default_steps: int | None = env_field(
        "KILN_DEFAULT_STEPS", None, parse=positive_int,
        help="steps of a request that does not ask (default: the model's)",
    )
    default_guidance: float | None = env_field(
        "KILN_DEFAULT_GUIDANCE", None, parse=non_negative_float,
        help="guidance of a request that does not ask (default: the model's)",
    )
    default_scheduler: str | None = env_field(
        "KILN_DEFAULT_SCHEDULER", None, parse=str,
        help="scheduler of a request that does not ask (default: the model's)",
    )
    # repr=False: a PostgreSQL URL may carry a password.
    database: str | None = env_field(
        "KILN_DATABASE_URL", None, repr=False, parse=str,
        help="ledger DB URL (default KILN_HOME/kiln.db)",
    )
    admin_key: str | None = env_field(
        "KILN_ADMIN_KEY", None, repr=False, parse=str,
        help="the admin API key, at least 32 characters (unset or empty: generated once)",
    )
    tenant_max_concurrent: int | None = env_field(
        "KILN_TENANT_MAX_CONCURRENT", None, parse=positive_int,
        help="generation requests a tenant may have running at once, across all ingress replicas "
        "(counted in the database; default: no cap)",
    )
    asset_retention_days: int | None = env_field(
        "KILN_ASSET_RETENTION_DAYS", None, parse=positive_int,
        help="delete unlicensed assets older than this many days (default: keep them)",
    )
    c2pa_cert: Path | None = env_field(
        "KILN_C2PA_CERT", None, parse=_path,
        help="PEM certificate chain (leaf first) to sign C2PA manifests with (default: none)",
    )
    c2pa_key: Path | None = env_field(
        "KILN_C2PA_KEY", None, parse=_path,
        help="PEM private key of KILN_C2PA_CERT",
    )
    c2pa_alg: str = env_field(
        "KILN_C2PA_ALG", "es256", parse=str,
        help="C2PA signing algorithm (default es256)",
    )
    styles_per_replica: int = env_field(
        "KILN_STYLES_PER_REPLICA", 8, parse=positive_int,
        help="LoRA styles a model replica keeps loaded, least recently used out (default 8)",
    )
    style_max_bytes: int = env_field(
        "KILN_STYLE_MAX_BYTES", 256 * 1024 * 1024, parse=positive_int,
        help="largest LoRA file a style import accepts, in bytes (default 256 MiB)",
    )
    style_max_rank: int = env_field(
        "KILN_STYLE_MAX_RANK", 64, parse=positive_int,
        help="highest LoRA rank a style may have; also the GPU fast path's LoRA hotswap target "
        "rank, so every style swaps into a compiled model (default 64)",
    )
    pin_scale_character: float = env_field(
        "KILN_PIN_SCALE_CHARACTER", 0.7, parse=_adapter_scale,
        help="IP-Adapter scale of a character pin in a generation, 0-2 (default 0.7)",
    )
    pin_scale_product: float = env_field(
        "KILN_PIN_SCALE_PRODUCT", 0.6, parse=_adapter_scale,
        help="IP-Adapter scale of a product pin in a generation, 0-2 (default 0.6)",
    )
    training_steps: int = env_field(
        "KILN_TRAINING_STEPS", 500, parse=positive_int,
        help="optimizer steps of a style training that does not ask (default 500)",
    )
    training_max_steps: int = env_field(
        "KILN_TRAINING_MAX_STEPS", 5000, parse=positive_int,
        help="most steps a style training may ask for (default 5000)",
    )
    training_rank: int = env_field(
        "KILN_TRAINING_RANK", 8, parse=positive_int,
        help="LoRA rank trained (default 8; at most `KILN_STYLE_MAX_RANK`)",
    )
    training_learning_rate: float = env_field(
        "KILN_TRAINING_LEARNING_RATE", 1e-4, parse=positive_float,
        help="AdamW learning rate of style training (default 1e-4, diffusers' recipe)",
    )
    training_cpus: float = env_field(
        "KILN_TRAINING_CPUS", 0.5, parse=non_negative_float,
        help="CPUs of a training job's Ray task, may be fractional (default 0.5)",
    )
    training_gpus: float | None = env_field(
        "KILN_TRAINING_GPUS", None, parse=non_negative_float,
        help="GPUs of a training job's Ray task (default: 1 where the cluster has one, else 0)",
    )
    training_image_max_bytes: int = env_field(
        "KILN_TRAINING_IMAGE_MAX_BYTES", 20 * 1024 * 1024, parse=positive_int,
        help="largest training image upload, in bytes, checked before decoding (default 20 MiB)",
    )
    training_image_max_pixels: int = env_field(
        "KILN_TRAINING_IMAGE_MAX_PIXELS", 40_000_000, parse=positive_int,
        help="most pixels (width x height) of a training image, checked before decompressing "
        "(default 40 megapixels)",
    )
    agentic_max_candidates: int = env_field(
        "KILN_AGENTIC_MAX_CANDIDATES", 4, parse=positive_int,
        help="most candidates an agentic generation may ask per kept image (default 4)",
    )
    agentic_max_rounds: int = env_field(
        "KILN_AGENTIC_MAX_ROUNDS", 3, parse=non_negative_int,
        help="most refinement rounds an agentic generation may ask (default 3)",
    )
    image_max_bytes: int = env_field(
        "KILN_IMAGE_MAX_BYTES", 20 * 1024 * 1024, parse=positive_int,
        help="largest input image (edits, references, pins, image-to-prompt, agentic), in bytes, "
        "checked before decoding (default 20 MiB)",
    )
    image_max_pixels: int = env_field(
        "KILN_IMAGE_MAX_PIXELS", 40_000_000, parse=positive_int,
        help="most pixels of an input image, checked before decompressing (default 40 megapixels)",
    )
    clip_gpus: float = env_field(
        "KILN_CLIP_GPUS", 0.0, parse=non_negative_float,
        help="GPU share of the image-to-prompt CLIP replica; 0 (default) runs it on CPU",
    )
    oom_retry: bool = env_field(
        "KILN_OOM_RETRY", True, parse=flag,
        help="retry a call that runs out of GPU memory with half the images, down to one "
        "(default on; `0`/`off` turns it off)",
    )
    oom_max_failures: int = env_field(
        "KILN_OOM_MAX_FAILURES", 3, parse=positive_int,
        help="calls in a row that run out of GPU memory even at one image before the replica's "
        "health check fails and Ray Serve replaces it (default 3)",
    )
    model_min_replicas: int = env_field(
        "KILN_MODEL_MIN_REPLICAS", 1, parse=non_negative_int,
        help="fewest replicas of each model deployment; 0 scales an idle model to zero and loads "
        "it on first use (default 1; `min_replicas` in models.toml per model)",
    )
    model_max_replicas: int = env_field(
        "KILN_MODEL_MAX_REPLICAS", 1, parse=positive_int,
        help="most replicas of each model deployment, added under load (default 1; "
        "`max_replicas` in models.toml per model)",
    )
    model_idle_s: float = env_field(
        "KILN_MODEL_IDLE_S", 300.0, parse=non_negative_float,
        help="seconds below its load target before a model replica is removed, down to the "
        "minimum (default 300)",
    )
    batch_max_bytes: int = env_field(
        "KILN_BATCH_MAX_BYTES", 64 * 1024 * 1024, parse=positive_int,
        help="largest JSONL upload of `POST /v1/batches`, in bytes, checked before it is read "
        "(default 64 MiB)",
    )
    batch_max_lines: int = env_field(
        "KILN_BATCH_MAX_LINES", 10_000, parse=positive_int,
        help="most request lines in one `POST /v1/batches` upload (default 10000)",
    )
    body_max_json: int = env_field(
        "KILN_BODY_MAX_JSON", 64 * 1024 * 1024, parse=positive_int,
        help="largest JSON request body (generations, edits, agentic, pins, image-to-prompt, "
        "admin, …), in bytes (default 64 MiB)",
    )
    body_max_images: int = env_field(
        "KILN_BODY_MAX_IMAGES", 64 * 1024 * 1024, parse=positive_int,
        help="largest multipart image upload (`POST /v1/images/edits`, `/v1/images/variations`), "
        "in bytes (default 64 MiB)",
    )
    body_max_style: int | None = env_field(
        "KILN_BODY_MAX_STYLE", None, parse=positive_int,
        help="largest `POST /v1/styles` upload, in bytes (default `KILN_STYLE_MAX_BYTES` + 1 MiB)",
    )
    body_max_training: int | None = env_field(
        "KILN_BODY_MAX_TRAINING", None, parse=positive_int,
        help="largest `POST /v1/styles/train` upload, in bytes (default 50 × "
        "`KILN_TRAINING_IMAGE_MAX_BYTES` + 1 MiB)",
    )
    multipart_max_parts: int = env_field(
        "KILN_MULTIPART_MAX_PARTS", 128, parse=positive_int,
        help="most parts (files and fields) in one multipart request (default 128)",
    )
    svg_max_concurrent: int = env_field(
        "KILN_SVG_MAX_CONCURRENT", 2, parse=positive_int,
        help="SVG traces one ingress process runs at once; more answer 429 (default 2)",
    )
    event_streams_per_tenant: int = env_field(
        "KILN_EVENT_STREAMS_PER_TENANT", 32, parse=positive_int,
        help="open `GET /v1/jobs/{id}/events` streams a tenant may hold per ingress process; "
        "more answer 429 (default 32)",
    )
    reservation_lease_s: float = env_field(
        "KILN_RESERVATION_LEASE_S", 600.0, parse=positive_float,
        help="seconds a credit reservation stays held without a renewal; live requests and jobs "
        "renew theirs, the sweeper releases expired ones (default 600)",
    )
    style_imports_max: int = env_field(
        "KILN_STYLE_IMPORTS_MAX", 50, parse=positive_int,
        help="most private styles a tenant may import (default 50)",
    )
    style_imports_max_bytes: int = env_field(
        "KILN_STYLE_IMPORTS_MAX_BYTES", 2 * 1024 * 1024 * 1024, parse=positive_int,
        help="most bytes of private style files a tenant may keep (default 2 GiB)",
    )
    # fmt: on

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
        switches = {var.field: getattr(self, var.field) for var in env_vars(FastPathSwitches)}
        return FastPathOptions(**switches, lora_hotswap_rank=self.style_max_rank)

    def effective_secret(self) -> str:
        """``KILN_SECRET``, else the key in ``KILN_HOME/secret.key`` (created once, 0600)."""
        if self.secret:
            return self.secret
        return load_or_create_secret(self.home / SECRET_FILE)


# Every variable Kiln reads, derived from the fields above.
ENV_VARS: tuple[EnvVar, ...] = env_vars(Settings)


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
