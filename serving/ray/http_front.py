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
from dataclasses import replace
from typing import Any

from serving.core.settings import Settings
from weights.catalog import Catalog

logger = logging.getLogger(__name__)

# Serve application names of the models (each model's deployment keeps its model id) and
# of the CLIP deployment, when ``kiln serve`` is the HTTP front.
MODEL_APP_PREFIX = "kiln-model-"
CLIP_APP = "kiln-clip"


def deploy_models(settings: Settings, catalog: Catalog) -> tuple[dict[str, Any], Any | None]:
    """Deploy every model, and CLIP, as Serve applications without HTTP routes; their
    handles (model id → handle, and CLIP's or ``None``). Returns before the replicas have
    loaded: requests wait for readiness through ``RayModelClient``."""
    from ray import serve

    from serving.ray.app import model_applications

    models, clip = model_applications(settings, catalog)
    targets = [
        serve.RunTarget(app, name=MODEL_APP_PREFIX + model_id, route_prefix=None)
        for model_id, app in models.items()
    ]
    if clip is not None:
        targets.append(serve.RunTarget(clip, name=CLIP_APP, route_prefix=None))
    handles = serve.run_many(targets, wait_for_applications_running=False)
    model_handles = dict(zip(models, handles, strict=False))
    clip_handle = handles[-1] if clip is not None else None
    return model_handles, clip_handle


def front_app(
    settings: Settings, catalog: Catalog, handles: dict[str, Any], clip_handle: Any | None
) -> Any:
    """The FastAPI app over the models' handles, as ``KilnIngress`` builds it, except that
    the app echoes ``x-request-id`` itself (no Serve proxy in front to do it)."""
    from serving.http.app import create_app
    from serving.ray.app import model_client
    from serving.ray.image_to_prompt.client import RayImageToPromptClient
    from serving.ray.jobs import RayJobBackend

    clip = catalog.first_component("clip")
    return create_app(
        replace(settings, secret=settings.effective_secret()),
        catalog,
        model_client(settings, catalog, handles),
        image_to_prompt=RayImageToPromptClient(clip_handle, clip.id if clip else None),
        job_backend=RayJobBackend(),
    )


def serve_http(app: Any, settings: Settings) -> None:
    """Run ``app`` under uvicorn on ``settings``' host and port until SIGINT or SIGTERM
    (uvicorn's own handlers: in-flight requests finish, then it returns)."""
    import uvicorn

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
    uvicorn.Server(config).run()
