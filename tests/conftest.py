"""Session-wide fixtures: one temp KILN_HOME with the tiny models built once per session.

Shared by all test packages (lead-owned; serving tests add their own fixtures in
tests/serving/ and tests/e2e/ conftest files).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

# Nothing is ever downloaded: set before any test imports diffusers/transformers.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config: pytest.Config) -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("KILN_TORCH_THREADS", "2")))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def kiln_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temp KILN_HOME for the whole session, exported as the env var."""
    home = tmp_path_factory.mktemp("kiln_home")
    os.environ["KILN_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def catalog(kiln_home: Path):
    """The shipped catalog with its tiny models built (once) under ``kiln_home``."""
    from weights.catalog import load_catalog
    from weights.tiny import ensure_tiny_models

    cat = load_catalog(kiln_home)
    ensure_tiny_models(cat)
    return cat


@pytest.fixture(scope="session")
def engines(catalog):
    """One loaded Engine per tiny model, shared by the session's pipeline tests."""
    from pipelines.engine import Engine

    return {spec.id: Engine.load(spec, device="cpu") for spec in catalog}


# Databases: a SQLite file, and a real PostgreSQL server (KILN_TEST_POSTGRES_URL, which
# .ci/run exports; skipped only where no server answers, and never under CI=true).

DEFAULT_POSTGRES_URL = "postgresql+psycopg://kiln:kiln@127.0.0.1:5432/kiln_test"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A reachable PostgreSQL server's URL, or a skip where none can be had (never in CI)."""
    url = os.environ.get("KILN_TEST_POSTGRES_URL", "").strip()
    required = bool(url) or os.environ.get("CI", "").lower() in ("1", "true", "yes")
    url = url or DEFAULT_POSTGRES_URL
    from sqlalchemy import create_engine, text

    engine = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to connect means "no server here"
        if required:
            pytest.fail(f"PostgreSQL required (CI or KILN_TEST_POSTGRES_URL) but {url}: {exc}")
        pytest.skip(f"no PostgreSQL server at {url} (set KILN_TEST_POSTGRES_URL)")
    finally:
        engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: a SQLite file in tmp, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'kiln.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = request.getfixturevalue("postgres_url")
    schema = f"test_{secrets.token_hex(6)}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
