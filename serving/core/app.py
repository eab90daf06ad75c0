"""The composition root: ``build_core`` makes Kiln's application core from settings, a
catalog and a model client, once per process (the HTTP app, a batch worker, a tool).

``KilnCore`` holds the domain services (accounts, ledger, assets, licenses, styles,
pins, jobs, files, the concurrency cap), what they run on (settings, catalog, the model
client port, the image-to-prompt client port, metrics) and the use cases, each built
once here with its dependencies: the paid path every image goes through (``paid``),
``generations``, ``edits``, ``agentic``, ``image_to_prompt``, ``exports``, ``pinning``
(making a pin). Adapters reach the core through it: ``serving.http`` puts it on the
FastAPI app, ``serving.ray`` builds one per batch worker, and call a use case with a
tenant id, a frozen order and a request id, e.g.
``await core.generations.create(tenant_id, order, request_id)``. It knows nothing of HTTP
or Ray.
"""

from __future__ import annotations

from dataclasses import dataclass

from serving.core.accounts import Accounts
from serving.core.agentic.service import Agentic
from serving.core.assets.retention import RetentionSweeper
from serving.core.assets.service import Assets
from serving.core.assets.store import BlobStore
from serving.core.edits.service import Edits
from serving.core.exports.exporter import Exports
from serving.core.files.store import FileStore
from serving.core.generations.service import Generations
from serving.core.generations.styling import StyleChooser
from serving.core.image_inputs import ImageInputs
from serving.core.image_to_prompt.client import ImageToPromptClient, LocalImageToPromptClient
from serving.core.image_to_prompt.service import ImageToPrompt
from serving.core.jobs import JobRunner, Jobs
from serving.core.jobs.runner import JobBackend
from serving.core.ledger import Ledger
from serving.core.licenses.service import Licenses
from serving.core.limits import ConcurrencyLimiter
from serving.core.metrics import Metrics
from serving.core.model_client import ModelClient
from serving.core.paid_images import PaidImages
from serving.core.pins.conditioning import Conditioning
from serving.core.pins.pinning import Pinning
from serving.core.pins.service import Pins
from serving.core.settings import Settings
from serving.core.styles.service import Styles
from weights.catalog import Catalog


@dataclass
class KilnCore:
    """The application core of one process, built by ``build_core``."""

    settings: Settings
    catalog: Catalog
    models: ModelClient
    files: FileStore
    metrics: Metrics
    ledger: Ledger
    accounts: Accounts
    limiter: ConcurrencyLimiter
    assets: Assets
    licenses: Licenses
    retention: RetentionSweeper
    styles: Styles
    jobs: Jobs
    job_runner: JobRunner
    pins: Pins
    clip: ImageToPromptClient  # the image-to-prompt port
    inputs: ImageInputs
    conditioning: Conditioning
    # Use cases
    paid: PaidImages
    image_to_prompt: ImageToPrompt
    generations: Generations
    edits: Edits
    exports: Exports
    pinning: Pinning
    agentic: Agentic


def build_core(
    settings: Settings,
    catalog: Catalog,
    models: ModelClient,
    *,
    ledger: Ledger | None = None,
    image_to_prompt: ImageToPromptClient | None = None,
    job_backend: JobBackend | None = None,
) -> KilnCore:
    """The core over ``models``. ``ledger`` defaults to one on the settings' database
    (opened and migrated); ``image_to_prompt`` to the catalog's CLIP loaded in-process
    (the Serve ingress passes its deployment's client); ``job_backend`` to a thread of
    this process (the Serve ingress passes ``serving.ray.jobs.RayJobBackend``)."""
    ledger = ledger or Ledger.of(settings)
    assets = Assets(ledger.engine, BlobStore(settings.assets_dir), settings.c2pa_signer())
    metrics = Metrics()
    limiter = ConcurrencyLimiter(settings.tenant_max_concurrent, ledger.engine)
    retention = RetentionSweeper(assets, settings.asset_retention_days)
    styles = Styles.from_settings(ledger.engine, catalog, settings)
    pins = Pins(ledger.engine, settings.home / "pins")
    clip = image_to_prompt or LocalImageToPromptClient(catalog, settings.home, settings.clip_device)
    inputs = ImageInputs(settings, assets)
    paid = PaidImages(
        ledger=ledger,
        limiter=limiter,
        models=models,
        assets=assets,
        retention=retention,
        metrics=metrics,
    )
    extracts = ImageToPrompt(catalog=catalog, clip=clip, inputs=inputs, paid=paid)
    conditioning = Conditioning(catalog, settings, models, pins)
    pinning = Pinning(catalog=catalog, models=models, inputs=inputs, pins=pins)
    licenses = Licenses(ledger, assets)
    job_runner = JobRunner(settings, ledger, catalog, job_backend)
    return KilnCore(
        settings=settings,
        catalog=catalog,
        models=models,
        files=FileStore(settings.files_dir, settings.effective_secret(), settings.url_ttl_s),
        metrics=metrics,
        ledger=ledger,
        accounts=Accounts(ledger),
        limiter=limiter,
        assets=assets,
        licenses=licenses,
        retention=retention,
        styles=styles,
        jobs=Jobs(ledger.engine),
        job_runner=job_runner,
        pins=pins,
        clip=clip,
        inputs=inputs,
        conditioning=conditioning,
        paid=paid,
        image_to_prompt=extracts,
        generations=Generations(
            settings=settings,
            catalog=catalog,
            styles=StyleChooser(styles, settings.styles_dir),
            inputs=inputs,
            conditioning=conditioning,
            pinning=pinning,
            image_to_prompt=extracts,
            paid=paid,
        ),
        edits=Edits(
            settings=settings,
            catalog=catalog,
            inputs=inputs,
            conditioning=conditioning,
            image_to_prompt=extracts,
            paid=paid,
        ),
        exports=Exports(
            settings=settings,
            catalog=catalog,
            ledger=ledger,
            assets=assets,
            licenses=licenses,
            job_runner=job_runner,
        ),
        pinning=pinning,
        agentic=Agentic(
            settings=settings,
            catalog=catalog,
            models=models,
            clip=clip,
            inputs=inputs,
            paid=paid,
        ),
    )
