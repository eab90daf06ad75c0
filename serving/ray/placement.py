"""Where a model's replicas run and how many: GPU share, replica range, scale to zero.

Server-wide defaults come from settings (``KILN_GPUS_PER_REPLICA``, ``KILN_REPLICA_CPUS``,
``KILN_MODEL_MIN_REPLICAS``, ``KILN_MODEL_MAX_REPLICAS``, ``KILN_MODEL_IDLE_S``); a
``models.toml`` entry may override them for its model::

    [models.sd15-photo]
    gpus = 0.25          # a quarter card a replica: four such models share one GPU
    min_replicas = 0     # no replica while idle; loads on first use (503 model_loading)
    max_replicas = 2     # a second replica under load

Decisions where the issue is silent:

- The per-model keys live in ``ModelSpec.extra`` and are checked here, when the app is
  built, not in ``weights/``: placement is a serving concern and a bad value stops the
  server at start with a ``CatalogError`` naming the entry.
- A model without its own ``gpus`` gets the settings' share (an equal share of the
  cluster's GPUs when models outnumber them, see ``Settings.effective_gpus_per_replica``).
- ``min_replicas == max_replicas`` (the default 1 and 1) is a fixed replica count; any
  other range turns on Serve's autoscaler, which aims at one batch of requests in flight
  per replica (``target_ongoing_requests = KILN_MAX_BATCH_SIZE``), adds replicas after
  load lasts ``UPSCALE_DELAY_S`` and removes one (down to zero, where allowed) after
  ``KILN_MODEL_IDLE_S`` below target. Scaling up from zero skips the delay (Serve's cold
  start path): the first request starts the load.
- A model that scales to zero starts with no replica (``initial_replicas = 0``): nothing
  is loaded until it is used.
- A local Ray (no ``KILN_RAY_ADDRESS``) gets enough logical CPUs for what it must run at
  once (``local_ray_cpus``): every model at its most replicas, the CLIP replica, the
  ingress and one training task, and never fewer than the machine's cores. Ray schedules
  by these logical CPUs only (torch's thread count is what uses the cores), and with the
  shipped catalog on a 2-core machine (7 models and CLIP at 0.25 each) two logical CPUs
  left a training job waiting until an idle model was scaled away, minutes later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from serving.core.settings import Settings, SettingsError
from weights.catalog import Catalog, CatalogError, ModelSpec

# How long load must last before Serve adds a replica (beyond the first): a burst shorter
# than this is absorbed by the queue rather than by loading a model for minutes.
UPSCALE_DELAY_S = 30.0
PLACEMENT_KEYS = ("gpus", "min_replicas", "max_replicas")


@dataclass(frozen=True)
class Placement:
    """One model deployment's resources and replica range."""

    gpus: float
    cpus: float
    min_replicas: int
    max_replicas: int
    idle_s: float

    @property
    def scales_to_zero(self) -> bool:
        """No replica runs while the model is idle; it loads on first use."""
        return self.min_replicas == 0

    def replica_options(self, target_ongoing_requests: int) -> dict[str, Any]:
        """Serve's ``num_replicas`` or ``autoscaling_config`` for this range."""
        if self.min_replicas == self.max_replicas:
            return {"num_replicas": self.max_replicas}
        return {
            "autoscaling_config": {
                "min_replicas": self.min_replicas,
                "initial_replicas": self.min_replicas,
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": target_ongoing_requests,
                "upscale_delay_s": UPSCALE_DELAY_S,
                "downscale_delay_s": self.idle_s,
                "downscale_to_zero_delay_s": self.idle_s,
            }
        }


def placement_for(
    settings: Settings, spec: ModelSpec | None, cluster_gpus: float, deployments: int = 1
) -> Placement:
    """The placement of ``spec``'s deployment: its catalog entry over the settings
    (``None``: the settings' defaults alone)."""
    where = f"catalog entry {spec.id!r}" if spec is not None else "settings"
    extra = spec.extra if spec is not None else {}
    gpus = settings.effective_gpus_per_replica(cluster_gpus, deployments)
    if "gpus" in extra:
        gpus = _number(extra["gpus"], f"{where}: gpus")
        if gpus < 0:
            raise CatalogError(f"{where}: gpus must not be negative, got {gpus}")
    min_replicas = settings.model_min_replicas
    max_replicas = settings.model_max_replicas
    if "min_replicas" in extra:
        min_replicas = _whole(extra["min_replicas"], f"{where}: min_replicas", minimum=0)
    if "max_replicas" in extra:
        max_replicas = _whole(extra["max_replicas"], f"{where}: max_replicas", minimum=1)
    if min_replicas > max_replicas:
        source = where if {"min_replicas", "max_replicas"} & set(extra) else "settings"
        error = CatalogError if source == where else SettingsError
        raise error(
            f"{source}: min_replicas ({min_replicas}) exceeds max_replicas ({max_replicas})"
        )
    return Placement(gpus, settings.replica_cpus, min_replicas, max_replicas, settings.model_idle_s)


def local_ray_cpus(settings: Settings, catalog: Catalog) -> int:
    """Logical CPUs of a local Ray for ``catalog``: ``KILN_RAY_NUM_CPUS`` where set, else
    the CPUs its deployments ask for at their most replicas, plus the CLIP replica, the
    ingress and one training task (``KILN_TRAINING_CPUS``), rounded up, and at least this
    machine's cores (see the module docstring)."""
    if settings.ray_num_cpus:
        return settings.ray_num_cpus
    models = sum(
        placement.cpus * placement.max_replicas
        for placement in (placement_for(settings, spec, 0.0) for spec in catalog)
    )
    clip = settings.replica_cpus if catalog.first_component("clip") is not None else 0.0
    demand = models + clip + settings.ingress_cpus + settings.training_cpus
    # Rounded to 1e-9 first: 0.25 * 7 + ... is not always exact in binary.
    return max(settings.effective_ray_num_cpus(), math.ceil(round(demand, 9)))


def on_demand_models(settings: Settings, specs: list[ModelSpec]) -> set[str]:
    """Ids of the models among ``specs`` that scale to zero (GPU share does not matter)."""
    return {spec.id for spec in specs if placement_for(settings, spec, 0.0).scales_to_zero}


def _number(value: Any, label: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CatalogError(f"{label} must be a number, got {value!r}")
    return float(value)


def _whole(value: Any, label: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CatalogError(f"{label} must be a whole number of at least {minimum}, got {value!r}")
    return value
