"""Fixtures of the serving unit tests: the real FastAPI app over an in-process client.

No Ray and no model loads: these tests stop at validation, listing and file signing.
Anything that generates goes through the live server in tests/e2e. The app keeps its
ledger in a SQLite file in the test's KILN_HOME; ``client`` holds a tenant's API key.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from secrets_for_tests import TEST_SECRET

from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings
from serving.http.app import create_app
from weights.catalog import Catalog, load_catalog


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty KILN_HOME (the tiny models are not built in it)."""
    return tmp_path


@pytest.fixture
def settings(home: Path) -> Settings:
    return Settings(home=home, secret=TEST_SECRET)


@pytest.fixture
def unit_catalog(settings: Settings) -> Catalog:
    return load_catalog(settings.home, settings.catalog_path)


@pytest.fixture
def client(settings: Settings, unit_catalog: Catalog, make_client) -> TestClient:
    app = create_app(settings, unit_catalog, LocalModelClient(unit_catalog, device="cpu"))
    return make_client(app)


# The app of the image-input tests (edits, OpenAI edits, references): tiny models run
# in-process, a tenant "alice" with 100 credits.


@pytest.fixture(scope="module")
def local_models(catalog) -> LocalModelClient:
    return LocalModelClient(catalog, device="cpu")


@pytest.fixture
def image_app(tmp_path: Path, catalog, local_models: LocalModelClient):
    return create_app(Settings(home=tmp_path, secret=TEST_SECRET), catalog, local_models)


@pytest.fixture
def alice(image_app, make_client) -> TestClient:
    return make_client(image_app, credits=100, name="alice")
