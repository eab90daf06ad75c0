"""Ledger fixtures: every test runs on a SQLite file and on a real PostgreSQL server.

PostgreSQL comes from ``KILN_TEST_POSTGRES_URL`` (``.ci/run`` starts a server and exports
it), else the same default URL on loopback if a server answers there. Its tests skip only
when no server can be had, and never under CI (``CI=true``): there a missing server fails.
Each test gets a fresh database: a new SQLite file, or a new PostgreSQL schema.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from serving.ledger import Ledger

DEFAULT_POSTGRES_URL = "postgresql+psycopg://kiln:kiln@127.0.0.1:5432/kiln_test"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A reachable PostgreSQL server's URL, or a skip where none can be had (never in CI)."""
    url = os.environ.get("KILN_TEST_POSTGRES_URL", "").strip()
    required = bool(url) or os.environ.get("CI", "").lower() in ("1", "true", "yes")
    url = url or DEFAULT_POSTGRES_URL
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


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    """A migrated ledger with room in its pool for the concurrency tests' threads."""
    with Ledger(db_url, pool_size=20) as opened:
        yield opened
