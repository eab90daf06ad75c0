"""``kiln serve``'s HTTP front: the FastAPI app in the ``kiln serve`` process, under uvicorn.

Under Ray Serve's own front (``KILN_HTTP_SERVER=serve``, and always under ``serve
deploy``) a request crosses two Ray hops before any model work: Serve's HTTP proxy actor
parses it and streams its ASGI messages to a ``KilnIngress`` replica over an actor call,
and the ingress calls the model replica through a handle. The first hop alone was ~11 ms
of the ~23 ms a tiny-model generation spent outside its pipeline call on 2 cores
(benchmarks/RESULTS.md, issue 19), and the proxy and the ingress are two more processes
to start. With ``KILN_HTTP_SERVER=kiln`` (the default) the process that runs ``kiln
serve`` answers HTTP itself: uvicorn runs the same app (``serving.http.app.create_app``)
over the same ``RayModelClient``, and each model is a Serve application of its own with
no HTTP route (``route_prefix=None``), reached by its deployment handle: one Ray hop.

Start order: base models are deployed first, edit and inpainting models and the
image-to-prompt CLIP once those are running (``start_stages``), so the first image does
not wait for models it does not need; ``/healthz`` is 200 once every model is up.

What stays the same: the routes, the errors, the body guard (the app's own
``BodyGuard`` is now the first reader of a body; uvicorn stops reading from a client
whose body the app has not taken, so no read-ahead bound is needed), ``x-request-id``
(echoed by the app's middleware, not by Serve's proxy), readiness (``/healthz`` answers
503 ``model_loading`` until every always-on model's replica answers), replicas,
batching, multiplexed styles and jobs (Ray tasks). What it gives up: more than one
ingress process. One uvicorn process on one event loop carries the HTTP work of a
workstation or a GPU server well (the GPU work is in the replicas); a cluster that needs
several ingress processes behind a load balancer runs ``KILN_HTTP_SERVER=serve`` or
``serve deploy deploy/serve.yaml`` (README: Scaling out).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Any

from serving.core.settings import Settings
from weights.catalog import Catalog, ModelKind

logger = logging.getLogger(__name__)

# Serve application names of the models (each model's deployment keeps its model id) and
# of the CLIP deployment, when ``kiln serve`` is the HTTP front.
MODEL_APP_PREFIX = "kiln-model-"
CLIP_APP = "kiln-clip"
# How long the second start stage waits for the first to be running, at most; and how
# often it looks.
FIRST_STAGE_WAIT_S = 300.0
STAGE_POLL_S = 0.5
# No access log line per call in the replicas: this process logs and counts every request
# itself, and Ray ships every replica log line to this process (the driver) to print,
# on the interpreter that serves HTTP.
REPLICA_LOGGING = {"enable_access_log": False}


def deploy_models(
    settings: Settings, catalog: Catalog, first_wait_s: float = FIRST_STAGE_WAIT_S
) -> tuple[dict[str, Any], Any | None]:
    """Deploy every model, and CLIP, as Serve applications without HTTP routes, in two
    stages (``start_stages``); their handles (model id → handle, and CLIP's or ``None``).

    Returns at once: the second stage is deployed by a background thread once the first
    is running (or after ``first_wait_s``), and requests wait for readiness through
    ``RayModelClient`` (a model of the second stage answers 503 ``model_loading`` with
    ``retry-after`` until its replica is up; ``/healthz`` waits for every stage)."""
    from ray import serve

    from serving.ray.app import model_applications
    from serving.ray.image_to_prompt.deployment import CLIP_DEPLOYMENT
    from serving.ray.placement import on_demand_models

    models, clip = model_applications(settings, catalog)
    first, later = start_stages(catalog)
    targets = {
        model_id: serve.RunTarget(
            models[model_id],
            name=MODEL_APP_PREFIX + model_id,
            route_prefix=None,
            logging_config=REPLICA_LOGGING,
        )
        for model_id in models
    }
    serve.run_many([targets[m] for m in first], wait_for_applications_running=False)
    second = [targets[m] for m in later]
    if clip is not None:
        second.append(
            serve.RunTarget(clip, name=CLIP_APP, route_prefix=None, logging_config=REPLICA_LOGGING)
        )
    if second:
        # A model that scales to zero starts with no replica: nothing to wait for.
        asleep = on_demand_models(settings, list(catalog))
        apps = [MODEL_APP_PREFIX + m for m in first if m not in asleep]
        threading.Thread(
            target=_deploy_after, args=(apps, second, first_wait_s), name="kiln-second-stage",
            daemon=True,
        ).start()  # fmt: skip
    # Handles of applications that may not exist yet: Serve routes their calls once they do.
    handles = {
        model_id: serve.get_deployment_handle(
            model_id, MODEL_APP_PREFIX + model_id, _check_exists=False
        )
        for model_id in models
    }
    clip_handle = None
    if clip is not None:
        clip_handle = serve.get_deployment_handle(CLIP_DEPLOYMENT, CLIP_APP, _check_exists=False)
    return handles, clip_handle


def start_stages(catalog: Catalog) -> tuple[list[str], list[str]]:
    """The catalog's models in start order: base (text-to-image) models first, then the
    rest (instruction-edit and inpainting checkpoints; the image-to-prompt CLIP joins
    them). On a small machine every replica's start is mostly importing torch and
    diffusers, and replicas started together share the cores: a base model alone is up
    in about half the time (benchmarks/RESULTS.md, issue 19). A catalog without a base
    model starts everything at once."""
    first = [spec.id for spec in catalog if spec.kind is ModelKind.BASE]
    later = [spec.id for spec in catalog if spec.kind is not ModelKind.BASE]
    return (first, later) if first else (later, [])


def _deploy_after(first_apps: list[str], second: list[Any], wait_s: float) -> None:
    """Deploy ``second`` once every application of ``first_apps`` is running (at once
    when there is none; after ``wait_s`` at most: a first stage that fails to start must
    not keep the rest down)."""
    from ray import serve
    from ray.serve.schema import ApplicationStatus

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            statuses = serve.status().applications
        except Exception:  # Serve shutting down: nothing more to deploy
            logger.info("second start stage not deployed: Serve is gone")
            return
        running = [statuses.get(app) for app in first_apps]
        if all(s is not None and s.status == ApplicationStatus.RUNNING for s in running):
            break
        time.sleep(STAGE_POLL_S)
    else:
        logger.warning("first start stage not running after %.0f s; starting the rest", wait_s)
    try:
        serve.run_many(second, wait_for_applications_running=False)
    except Exception:
        logger.exception("could not deploy the second start stage")
        return
    logger.info("second start stage deployed: %s", ", ".join(t.name for t in second))


def front_app(
    settings: Settings, catalog: Catalog, handles: dict[str, Any], clip_handle: Any | None
) -> Any:
    """The FastAPI app over the models' handles, as ``KilnIngress`` builds it, except that
    the app echoes ``x-request-id`` itself (no Serve proxy in front to do it)."""
    from serving.ray.app import http_app

    settings = replace(settings, secret=settings.effective_secret())
    # The only ingress of this server: its fair queues run here (serving.ray.app.admission).
    return http_app(settings, catalog, handles, clip_handle, echo_request_id=True, one_ingress=True)


def serve_http(app: Any, settings: Settings) -> None:
    """Run ``app`` under uvicorn on ``settings``' host and port until SIGINT or SIGTERM
    (uvicorn's own handlers: in-flight requests finish), then shut Serve down on the same
    event loop: the handles' routers run on it and must close before it does."""
    import asyncio

    import uvicorn
    from ray import serve

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        # Kiln's middleware logs and counts every request; uvicorn's access log would
        # write each one a second time, on the request path.
        access_log=False,
        log_level="warning",
        # Generations hold a connection for a pipeline call: keep idle ones a while.
        timeout_keep_alive=30,
    )

    async def run() -> None:
        try:
            await uvicorn.Server(config).serve()
        finally:
            await serve.shutdown_async()

    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(run())
