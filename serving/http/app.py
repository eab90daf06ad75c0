"""The FastAPI app: routers of every endpoint family, error mapping, middleware.

``create_app`` knows nothing of Ray: the Serve ingress passes Ray's implementations of
the core's ports (``RayModelClient``, ``RayImageToPromptClient``, ``RayJobBackend``),
tools and tests a ``LocalModelClient`` and the in-process defaults. Building the app
reads no environment variable and loads no model; it opens (and migrates) the ledger's
database unless given a ``Ledger``.
"""

from __future__ import annotations

from fastapi import FastAPI, Response

from serving.core.app import build_core
from serving.core.errors import service_unavailable
from serving.core.image_to_prompt.client import ImageToPromptClient
from serving.core.jobs.runner import JobBackend
from serving.core.ledger import Ledger
from serving.core.metrics import CONTENT_TYPE
from serving.core.model_client import ModelClient
from serving.core.settings import Settings
from serving.http.admin.api_router import router as admin_router
from serving.http.agentic.api_router import router as agentic_router
from serving.http.arrivals import ArrivalsMiddleware
from serving.http.assets.api_router import router as assets_router
from serving.http.batch.api_router import router as batches_router
from serving.http.body_guard import BodyGuard, BodyLimits
from serving.http.credits.api_router import router as credits_router
from serving.http.deps import CoreDep
from serving.http.edits.api_router import router as edits_router
from serving.http.errors import install_error_handler
from serving.http.exports.api_router import router as exports_router
from serving.http.files.api_router import router as files_router
from serving.http.generations.api_router import router as generations_router
from serving.http.image_to_prompt.api_router import router as image_to_prompt_router
from serving.http.jobs.api_router import router as jobs_router
from serving.http.licenses.api_router import router as licenses_router
from serving.http.middleware import RequestContextMiddleware
from serving.http.models.api_router import router as models_router
from serving.http.openai_images.api_router import router as openai_images_router
from serving.http.pins.api_router import router as pins_router
from serving.http.prices.api_router import router as prices_router
from serving.http.studio.routes import mount_studio
from serving.http.styles.api_router import router as styles_router
from serving.http.styles.training_router import router as style_training_router
from weights.catalog import Catalog

API_VERSION = "0.1.0"


def create_app(
    settings: Settings,
    catalog: Catalog,
    models: ModelClient,
    *,
    echo_request_id: bool = True,
    ledger: Ledger | None = None,
    image_to_prompt: ImageToPromptClient | None = None,
    job_backend: JobBackend | None = None,
) -> FastAPI:
    """The HTTP API over ``models``. ``echo_request_id=False`` behind Ray Serve's proxy,
    which sets ``x-request-id`` on responses itself. ``ledger``, ``image_to_prompt`` and
    ``job_backend`` go to ``build_core`` (the Serve ingress passes Ray's).
    """
    app = FastAPI(
        title="Kiln",
        version=API_VERSION,
        description="Self-hosted image generation: native and OpenAI-compatible routes.",
    )
    core = build_core(
        settings,
        catalog,
        models,
        ledger=ledger,
        image_to_prompt=image_to_prompt,
        job_backend=job_backend,
    )
    app.state.kiln = core
    install_error_handler(app)
    # Innermost: an authenticated image request counts as on its way to a model at once.
    admission = core.paid.admission
    if admission is not None:
        app.add_middleware(ArrivalsMiddleware, admission=admission)
    # The caller first, then the body's bytes counted (inside the request context, so
    # its 401s and 413s carry the request id and are counted in the metrics).
    app.add_middleware(
        BodyGuard,
        limits=BodyLimits.of(settings),
        authenticate=core.accounts.authenticate,
        remember_principal=True,
    )
    app.add_middleware(
        RequestContextMiddleware, metrics=core.metrics, echo_request_id=echo_request_id
    )
    app.include_router(models_router)
    app.include_router(prices_router)
    app.include_router(generations_router)
    app.include_router(edits_router)
    app.include_router(openai_images_router)
    app.include_router(files_router)
    app.include_router(credits_router)
    app.include_router(assets_router)
    app.include_router(licenses_router)
    app.include_router(exports_router)
    app.include_router(pins_router)
    app.include_router(admin_router)
    app.include_router(style_training_router)
    app.include_router(styles_router)
    app.include_router(jobs_router)
    app.include_router(agentic_router)
    app.include_router(image_to_prompt_router)
    app.include_router(batches_router)
    # Kiln Studio at ``/``: static files, speaking only the routes above.
    mount_studio(app)
    if settings.bench:
        from serving.http.bench.api_router import router as bench_router

        app.include_router(bench_router)

    @app.get("/healthz", tags=["system"])
    async def healthz(state: CoreDep) -> dict:
        """Ready: every model is loaded (503 with ``retry-after`` while any is loading)."""
        loading = state.models.unready()
        if loading:
            message = f"models still loading: {', '.join(loading)}"
            raise service_unavailable(message, retry_after_s=5, code="model_loading")
        return {"status": "ok", "models": state.catalog.ids()}

    @app.get("/metrics", tags=["system"], response_class=Response)
    async def prometheus_metrics(state: CoreDep) -> Response:
        """Prometheus text exposition."""
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    return app
