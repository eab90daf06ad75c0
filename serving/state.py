"""What every router reaches through the request: settings, catalog, models, files, metrics,
the credits ledger, accounts, assets, licenses, styles, jobs and the per-tenant
concurrency cap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from serving.accounts import Accounts
from serving.assets.retention import RetentionSweeper
from serving.assets.service import Assets
from serving.files.serving import FileStore
from serving.image_to_prompt.client import ImageToPromptClient
from serving.jobs import JobRunner, Jobs
from serving.ledger import Ledger
from serving.licenses.service import Licenses
from serving.limits import ConcurrencyLimiter
from serving.metrics import Metrics
from serving.model_client import ModelClient
from serving.settings import Settings
from serving.styles.service import Styles
from weights.catalog import Catalog


@dataclass
class AppState:
    """The ingress's long-lived objects, built once per app in ``serving.api.create_app``."""

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


def get_state(request: Request) -> AppState:
    """FastAPI dependency: the app's ``AppState``."""
    return request.app.state.kiln


# Route parameter type: ``state: StateDep``.
StateDep = Annotated[AppState, Depends(get_state)]
