"""Fixtures of the serving unit tests: the real FastAPI app over an in-process client.

No Ray and no model loads: these tests stop at validation, listing and file signing.
Anything that generates goes through the live server in tests/e2e. The app keeps its
ledger in a SQLite file in the test's KILN_HOME; ``client`` holds a tenant's API key.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.api import create_app
from serving.model_client import LocalModelClient
from serving.settings import Settings
from weights.catalog import Catalog, load_catalog


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty KILN_HOME (the tiny models are not built in it)."""
    return tmp_path


@pytest.fixture
def settings(home: Path) -> Settings:
    return Settings(home=home, secret="test-secret")


@pytest.fixture
def unit_catalog(settings: Settings) -> Catalog:
    return load_catalog(settings.home, settings.catalog_path)


@pytest.fixture
def client(settings: Settings, unit_catalog: Catalog) -> TestClient:
    app = create_app(settings, unit_catalog, LocalModelClient(unit_catalog, device="cpu"))
    return tenant_client(app)


@pytest.fixture
def make_client():
    """``tenant_client``, for tests that build their own app."""
    return tenant_client


def tenant_client(app: FastAPI, credits: int = 1000, name: str = "studio") -> TestClient:
    """A client holding a new tenant's key, the tenant granted ``credits``."""
    state = app.state.kiln
    tenant = state.accounts.create_tenant(name)
    if credits:
        state.ledger.grant(tenant.id, credits)
    key = state.accounts.create_key(tenant.id).key
    # raise_server_exceptions=False: a 500 must come back as a response, as over HTTP.
    client = TestClient(
        app, raise_server_exceptions=False, headers={"authorization": f"Bearer {key}"}
    )
    client.tenant_id = tenant.id  # type: ignore[attr-defined]
    return client
