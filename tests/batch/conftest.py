"""Fixtures of the ``kiln batch`` tests (helpers are in ``batch_helpers``).

The tiny models come from the session's ``catalog`` fixture (tests/conftest.py); each
test's ledger, assets and outputs live in its own tmp folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from secrets_for_tests import TEST_SECRET

from serving.core.settings import Settings


@pytest.fixture
def batch_settings(tmp_path: Path) -> Settings:
    """A run's settings: its own KILN_HOME (ledger, assets) in tmp, one torch thread an
    actor (two actors share the 2 cores)."""
    home = tmp_path / "home"
    return Settings(home=home, secret=TEST_SECRET, torch_threads=1)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray per test module (a start costs seconds on 2 cores)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
