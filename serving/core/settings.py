"""Every environment variable Kiln reads, each declared once, and read lazily.

As vLLM's ``envs.py``, one declaration per variable; here it is the dataclass field it
fills (``pipelines/env_fields.py``: ``env_field`` gives the name, parser and help, the
field its type and default). Serving's variables are declared by group in
``serving/core/variables/``, the GPU fast path's in ``pipelines/fast_path.py``
(``FastPathSwitches``: the pipelines may not import serving); ``Settings`` inherits every
group. ``ENV_VARS`` is derived from the fields, README.md's configuration table from
the groups (``serving/core/settings_table.py``).

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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipelines.content_credentials import C2paSigner
from pipelines.env_fields import EnvVar, env_vars
from pipelines.fast_path import FastPathOptions, FastPathSwitches
from pipelines.params import GenerationDefaults
from serving.core.variables.assets import AssetVariables
from serving.core.variables.generation import GenerationVariables
from serving.core.variables.limits import RequestLimits
from serving.core.variables.placement import PlacementVariables
from serving.core.variables.server import ServerVariables
from serving.core.variables.styles import StyleVariables
from weights.home import private_dir

SECRET_FILE = "secret.key"
# The shortest KILN_SECRET or KILN_ADMIN_KEY Kiln accepts.
MIN_KEY_CHARS = 32


class SettingsError(ValueError):
    """An environment variable (or builder argument) with a value Kiln cannot use."""


# Serving's groups of variables, then the fast path's, in the README's order.
SETTING_GROUPS: tuple[type, ...] = (
    ServerVariables,
    PlacementVariables,
    GenerationVariables,
    AssetVariables,
    StyleVariables,
    RequestLimits,
    FastPathSwitches,
)


@dataclass(frozen=True)
class Settings(*SETTING_GROUPS):
    """Kiln's configuration, resolved once. Frozen and picklable: it travels to replicas.

    It declares no field of its own: each is inherited from a group of ``SETTING_GROUPS``,
    where it is the one declaration of its environment variable (``env_field``).
    """

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
            preview_every=self.preview_every,
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


# Every variable Kiln reads, derived from the groups' fields, group by group.
ENV_VARS: tuple[EnvVar, ...] = tuple(var for group in SETTING_GROUPS for var in env_vars(group))


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
    """Field names that builder ``args`` and overrides may use: every setting's."""
    return [var.field for var in ENV_VARS]
