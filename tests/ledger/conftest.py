"""Ledger fixtures: every test runs on a SQLite file and on a real PostgreSQL server
(``db_url``, in tests/conftest.py, where the serving tests share it).

PostgreSQL comes from ``KILN_TEST_POSTGRES_URL`` (``.ci/run`` starts a server and exports
it), else the same default URL on loopback if a server answers there. Its tests skip only
when no server can be had, and never under CI (``CI=true``): there a missing server fails.
Each test gets a fresh database: a new SQLite file, or a new PostgreSQL schema.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from serving.core.ledger import Ledger


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    """A migrated ledger with room in its pool for the concurrency tests' threads."""
    with Ledger(db_url, pool_size=20) as opened:
        yield opened
