"""Fixtures of the ``kiln batch`` tests (helpers are in ``batch_helpers``).

The tiny models come from the session's ``catalog`` fixture (tests/conftest.py); each
test's ledger, assets and outputs live in its own tmp folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.settings import Settings


@pytest.fixture
def batch_settings(tmp_path: Path) -> Settings:
    """A run's settings: its own KILN_HOME (ledger, assets) in tmp, one torch thread an
    actor (two actors share the 2 cores)."""
    home = tmp_path / "home"
    return Settings(home=home, secret="s", torch_threads=1)
