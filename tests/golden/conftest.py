"""Fixtures of the golden tests: one app, one tenant and one run of the request set for
the whole module (``golden_runner.GoldenRun``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from golden_runner import GoldenRun


@pytest.fixture(scope="module")
def golden_run(tmp_path_factory, catalog, tiny_sd15_loras) -> Iterator[GoldenRun]:
    """The app over the session's tiny models (tests/conftest.py ``catalog``), with its
    ledger and assets in a temp KILN_HOME of its own."""
    import torch

    threads = torch.get_num_threads()
    run = GoldenRun(tmp_path_factory.mktemp("golden_home"), catalog, tiny_sd15_loras)
    yield run
    run.close()
    torch.set_num_threads(threads)  # the batch worker sets its own; give the session's back
