"""Fixtures of the job tests: settings on a fresh database, an app over the session's tiny
models (helpers for clients and uploads are in job_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from secrets_for_tests import TEST_SECRET
from sqlalchemy import select

from serving.core.ledger.schema import jobs
from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings
from serving.http.app import create_app


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """Settings on a fresh database; trainings are a few steps unless a test asks."""
    return Settings(
        home=tmp_path, secret=TEST_SECRET, database=db_url, training_steps=2, training_rank=4
    )


@pytest.fixture
def app(settings: Settings, catalog) -> Iterator[FastAPI]:
    """The real app (jobs run on its in-process thread backend: no Ray here)."""
    app = create_app(settings, catalog, LocalModelClient(catalog, device="cpu"))
    yield app
    state = app.state.kiln
    # Stop whatever a failed test left running, then let the worker thread finish.
    with state.ledger.engine.begin() as conn:
        active = conn.execute(
            select(jobs.c.id, jobs.c.tenant_id).where(jobs.c.state.in_(("queued", "running")))
        ).all()
    for job_id, tenant_id in active:
        state.job_runner.cancel(tenant_id, job_id)
    state.job_runner.wait(timeout=120)
    state.job_runner.close()
    state.ledger.close()
