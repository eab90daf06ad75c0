"""The Ray Serve application: a CPU ingress (FastAPI) and one deployment per base model.

Used by ``kiln serve`` and by ``serve deploy deploy/serve.yaml``
(``import_path: serving.ray.app:build_app``). Replica counts and resources set here are
defaults (settings, and each model's catalog entry: ``serving.ray.placement``); the YAML's
``deployments`` entries override them by deployment name (the ingress is
``KilnIngress``, each model's deployment is named by its model id).
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import Any

from ray import serve
from ray.serve import Application

from serving.core.settings import Settings
from serving.ray.placement import placement_for
from weights.catalog import Catalog, ModelSpec, load_catalog

logger = logging.getLogger(__name__)

INGRESS_NAME = "KilnIngress"
# Enough concurrent HTTP requests on the ingress to absorb bursts of a few hundred; the
# per-model queues (KILN_MAX_QUEUED) decide when to answer 503.
INGRESS_MAX_ONGOING = 1024


@serve.deployment(name=INGRESS_NAME)
@serve.ingress()
class KilnIngress:
    """HTTP in, model handles out. Imports no torch: images arrive as numpy arrays."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        handles: dict[str, Any],
        clip_handle: Any | None = None,
    ):
        from serving.core.logs import configure_replica_logging

        configure_replica_logging()
        self.settings = settings
        self.catalog = catalog
        self.handles = handles
        self.clip_handle = clip_handle

    def __serve_build_asgi_app__(self) -> Any:
        """Serve calls this after ``__init__``: the FastAPI app for this replica."""
        # Serve's proxy echoes or generates x-request-id on every response itself.
        return http_app(
            self.settings,
            self.catalog,
            self.handles,
            self.clip_handle,
            echo_request_id=False,
            one_ingress=False,  # Serve may run several replicas of this ingress
        )


def http_app(
    settings: Settings,
    catalog: Catalog,
    handles: dict[str, Any],
    clip_handle: Any | None,
    *,
    echo_request_id: bool,
    one_ingress: bool,
) -> Any:
    """The FastAPI app over the models' and CLIP's Serve handles, for either HTTP front
    (a ``KilnIngress`` replica, or ``kiln serve`` itself: serving/ray/http_front.py).
    Jobs run as Ray tasks with their kind's resources, not in the HTTP process."""
    from serving.http.app import create_app
    from serving.ray.image_to_prompt.client import RayImageToPromptClient
    from serving.ray.jobs import RayJobBackend
    from serving.ray.replica_failures import ReplicaFailures

    clip = catalog.first_component("clip")
    failures = ReplicaFailures()  # dead replicas of the models and of CLIP
    app = create_app(
        settings,
        catalog,
        model_client(settings, catalog, handles, failures, one_ingress=one_ingress),
        echo_request_id=echo_request_id,
        image_to_prompt=RayImageToPromptClient(clip_handle, clip.id if clip else None, failures),
        job_backend=RayJobBackend(),
    )
    failures.metrics = app.state.kiln.metrics  # counted in the app's /metrics registry
    return app


def model_client(
    settings: Settings,
    catalog: Catalog,
    handles: dict[str, Any],
    failures: Any = None,
    one_ingress: bool = False,
) -> Any:
    """The ingress's ``RayModelClient`` over the model handles; it must know which models
    scale to zero (probed only by requests: a probe would wake them). ``failures``: the
    ``ReplicaFailures`` it shares with the CLIP client (a fresh one if not given)."""
    from serving.ray.model_client import ON_DEMAND_READY_S, RayModelClient
    from serving.ray.placement import on_demand_models

    models = [catalog.get(model_id) for model_id in handles]
    return RayModelClient(
        handles,
        on_demand=on_demand_models(settings, models),
        # Well inside the idle timeout: readiness lapses before the replica can go.
        ready_ttl_s=min(ON_DEMAND_READY_S, settings.model_idle_s / 2),
        failures=failures,
        admission=admission(settings, models, one_ingress),
    )


def admission(settings: Settings, models: list[ModelSpec], one_ingress: bool) -> Any:
    """The ingress's admission: each model's scheduler admits one batch group per replica
    the model may have (its placement's most replicas).

    Where the schedulers run (``KILN_SCHEDULER``): in this process when it is the only
    ingress (``one_ingress``: ``kiln serve``'s own HTTP front) and the setting is
    ``auto``, or when it says ``process``; else in a named Ray actor per model that every
    ingress replica shares (``RayAdmission``: Ray Serve's front, several replicas)."""
    from serving.core.scheduling.admission import LocalAdmission, scheduler_config
    from serving.ray.scheduler import RayAdmission

    configs = {
        spec.id: scheduler_config(settings, placement_for(settings, spec, 0.0).max_replicas)
        for spec in models
    }
    place = settings.scheduler
    if place == "process" or (place == "auto" and one_ingress):
        return LocalAdmission(
            enabled=settings.fair_queue,
            default_max_queued_images=settings.tenant_max_queued_images,
            configs=configs,
        )
    return RayAdmission(
        configs,
        enabled=settings.fair_queue,
        default_max_queued_images=settings.tenant_max_queued_images,
    )


def model_deployment_options(
    settings: Settings,
    cluster_gpus: float,
    deployments: int = 1,
    spec: ModelSpec | None = None,
) -> dict[str, Any]:
    """Serve options of a model deployment, from settings and ``spec``'s catalog entry
    (GPU share, replica range, scale to zero: ``serving.ray.placement``)."""
    placement = placement_for(settings, spec, cluster_gpus, deployments)
    return {
        "ray_actor_options": {"num_cpus": placement.cpus, "num_gpus": placement.gpus},
        # A replica is "busy" at one batch in flight: the autoscaler's target.
        **placement.replica_options(target_ongoing_requests=settings.max_batch_size),
        # Twice the batch: the next batch fills while the current one runs.
        "max_ongoing_requests": 2 * settings.max_batch_size,
        "max_queued_requests": settings.max_queued,
        # Loading a real checkpoint can take minutes on a cold disk.
        "health_check_timeout_s": 120,
        "graceful_shutdown_timeout_s": 30,
    }


def build_application(
    settings: Settings, catalog: Catalog | None = None, cluster_gpus: float | None = None
) -> Application:
    """The bound application for ``settings`` (catalog loaded from KILN_HOME if not given):
    the ``KilnIngress`` over every model's deployment and the CLIP one."""
    catalog = catalog or load_catalog(settings.home, settings.catalog_path)
    # Resolved once here so every ingress replica signs file URLs with the same key.
    settings = replace(settings, secret=settings.effective_secret())
    models, clip = model_applications(settings, catalog, cluster_gpus)
    ingress = KilnIngress.options(
        ray_actor_options={"num_cpus": settings.ingress_cpus},
        max_ongoing_requests=INGRESS_MAX_ONGOING,
    )
    return ingress.bind(settings, catalog, models, clip)


def model_applications(
    settings: Settings, catalog: Catalog, cluster_gpus: float | None = None
) -> tuple[dict[str, Application], Application | None]:
    """Every catalog model's bound deployment (base, instruct-edit and inpainting models:
    every ``ModelKind``; components ride along inside them), keyed by model id, and the
    image-to-prompt CLIP deployment (``None`` without a ``clip`` component)."""
    from serving.ray.model_deployment import ModelDeployment

    if cluster_gpus is None:
        cluster_gpus = _cluster_gpus()
    specs = list(catalog)
    options = {
        spec.id: model_deployment_options(settings, cluster_gpus, len(specs), spec)
        for spec in specs
    }
    models = {
        spec.id: ModelDeployment.options(name=spec.id, **options[spec.id]).bind(
            settings, spec, tuple(catalog.components.values())
        )
        for spec in specs
    }
    logger.info(
        "app: %d model deployment(s): %s",
        len(models),
        ", ".join(f"{i} ({o['ray_actor_options']['num_gpus']} GPU)" for i, o in options.items()),
    )
    return models, _clip_deployment(settings, catalog)


def _clip_deployment(settings: Settings, catalog: Catalog) -> Application | None:
    """The image-to-prompt CLIP deployment of the catalog's first ``clip`` component."""
    from serving.ray.image_to_prompt.deployment import ClipDeployment, clip_deployment_options

    component = catalog.first_component("clip")
    if component is None:
        return None
    return ClipDeployment.options(**clip_deployment_options(settings)).bind(settings, component)


def build_app(args: dict[str, Any] | None = None) -> Application:
    """Serve's application builder: settings from the environment, ``args`` override them.

    ``args`` keys are settings field names (``max_batch_size: 4``), as in the ``args`` of
    an application in ``deploy/serve.yaml``.
    """
    from serving.core.accounts import prepare_admin

    os.environ["HF_HUB_OFFLINE"] = "1"
    settings = Settings.from_env(**dict(args or {}))
    if prepare_admin(settings.database_url, settings.home, settings.admin_key) is not None:
        logger.warning("generated the first admin key into %s", settings.home / "admin.key")
    return build_application(settings)


def _cluster_gpus() -> float:
    import ray

    if not ray.is_initialized():
        return 0.0
    return float(ray.cluster_resources().get("GPU", 0.0))
