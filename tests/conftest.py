"""Session-wide fixtures: one temp KILN_HOME with the tiny models built once per session.

Shared by all test packages (lead-owned; serving tests add their own fixtures in
tests/serving/ and tests/e2e/ conftest files).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

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
    from weights.tiny import ensure_tiny_components, ensure_tiny_models

    cat = load_catalog(kiln_home)
    ensure_tiny_models(cat)
    ensure_tiny_components(cat.components.values())
    return cat


@pytest.fixture(scope="session")
def engines(catalog):
    """One loaded Engine per tiny model, shared by the session's pipeline tests."""
    from pipelines.engine import Engine

    components = tuple(catalog.components.values())
    return {spec.id: Engine.load(spec, device="cpu", components=components) for spec in catalog}


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


@contextlib.contextmanager
def fresh_postgres_schema(base_url: str, prefix: str = "test") -> Iterator[str]:
    """The URL of a new, empty schema on the server at ``base_url`` (``search_path`` set
    in the URL), dropped with everything in it afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"{prefix}_{secrets.token_hex(6)}"
    admin = create_engine(base_url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_schema():
    """``fresh_postgres_schema``, for fixtures in other folders (conftest is not importable
    by name from every test folder)."""
    return fresh_postgres_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: a SQLite file in tmp, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'kiln.db'}"
        return
    with fresh_postgres_schema(request.getfixturevalue("postgres_url")) as url:
        yield url


# C2PA signing credentials for tests: C2PA wants a chain, not a self-signed leaf.


@pytest.fixture(scope="session")
def c2pa_credentials():
    """A test CA and a signing leaf it issued (C2PA refuses a self-signed leaf)."""
    from pipelines.throwaway_chain import make_throwaway_chain

    return make_throwaway_chain()


# LoRA styles for tests: real files in the diffusers/peft layout, made on the tiny UNet.


@pytest.fixture(scope="session")
def tiny_sd15_loras(catalog, tmp_path_factory) -> tuple[Path, Path]:
    """Two different LoRA files (styles A and B) for tiny-sd15."""
    from styles.random_lora import random_unet_lora

    unet_dir = catalog.get("tiny-sd15").source / "unet"
    out = tmp_path_factory.mktemp("loras")
    return (
        random_unet_lora(unet_dir, out / "style_a.safetensors", seed=1),
        random_unet_lora(unet_dir, out / "style_b.safetensors", seed=2),
    )


# Clients of the real app holding a tenant's key (serving and jobs tests).


@pytest.fixture
def make_client():
    """``tenant_client``, for tests that build their own app."""
    return tenant_client


def tenant_client(app: Any, credits: int = 1000, name: str = "studio") -> TestClient:
    """A client holding a new tenant's key, the tenant granted ``credits``."""
    # Imported here: the GPU machine runs tests/pipelines and tests/weights without
    # fastapi (benchmarks/run_on_gpu.sh), and this module is their conftest too.
    from fastapi.testclient import TestClient

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
