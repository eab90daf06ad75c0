"""The composition root: ``build_core`` makes Kiln's application core from settings, a
catalog and a model client, once per process (the HTTP app, a batch worker, a tool).

``KilnCore`` holds the domain services (accounts, ledger, assets, licenses, styles,
jobs, files, the concurrency cap) and what they run on (settings, catalog, the model
client port, the image-to-prompt client port, metrics). Adapters reach the core through
it: ``serving.http`` puts it on the FastAPI app, ``serving.ray`` builds one per batch
worker. It knows nothing of HTTP or Ray.
"""

from __future__ import annotations

from dataclasses import dataclass

from serving.core.accounts import Accounts
from serving.core.assets.retention import RetentionSweeper
from serving.core.assets.service import Assets
from serving.core.assets.store import BlobStore
from serving.core.files.store import FileStore
from serving.core.image_to_prompt.client import ImageToPromptClient, LocalImageToPromptClient
from serving.core.jobs import JobRunner, Jobs
from serving.core.ledger import Ledger
from serving.core.licenses.service import Licenses
from serving.core.limits import ConcurrencyLimiter
from serving.core.metrics import Metrics
from serving.core.model_client import ModelClient
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
    image_to_prompt: ImageToPromptClient


def build_core(
    settings: Settings,
    catalog: Catalog,
    models: ModelClient,
    *,
    ledger: Ledger | None = None,
    image_to_prompt: ImageToPromptClient | None = None,
) -> KilnCore:
    """The core over ``models``. ``ledger`` defaults to one on the settings' database
    (opened and migrated); ``image_to_prompt`` to the catalog's CLIP loaded in-process
    (the Serve ingress passes its deployment's client)."""
    ledger = ledger or Ledger.of(settings)
    assets = Assets(ledger.engine, BlobStore(settings.assets_dir), settings.c2pa_signer())
    return KilnCore(
        settings=settings,
        catalog=catalog,
        models=models,
        files=FileStore(settings.files_dir, settings.effective_secret(), settings.url_ttl_s),
        metrics=Metrics(),
        ledger=ledger,
        accounts=Accounts(ledger),
        limiter=ConcurrencyLimiter(settings.tenant_max_concurrent, ledger.engine),
        assets=assets,
        licenses=Licenses(ledger, assets),
        retention=RetentionSweeper(assets, settings.asset_retention_days),
        styles=Styles.from_settings(ledger.engine, catalog, settings),
        jobs=Jobs(ledger.engine),
        job_runner=JobRunner(settings, ledger, catalog),
        image_to_prompt=image_to_prompt
        or LocalImageToPromptClient(catalog, settings.home, settings.clip_device),
    )
