"""What every router reaches through the request: settings, catalog, models, files, metrics,
the credits ledger, accounts, assets, licenses, styles, jobs and the per-tenant
concurrency cap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from serving.core.accounts import Accounts
from serving.core.assets.retention import RetentionSweeper
from serving.core.assets.service import Assets
from serving.core.files.store import FileStore
from serving.core.image_to_prompt.client import ImageToPromptClient
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
class AppState:
    """The ingress's long-lived objects, built once per app in ``serving.http.app.create_app``."""

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
