"""Session-wide fixtures: one temp KILN_HOME with the tiny models built once per session.

Shared by all test packages (lead-owned; serving tests add their own fixtures in
tests/serving/ and tests/e2e/ conftest files).
"""

from __future__ import annotations

import os
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
