"""A real Kiln HTTP server without Ray, for tests that need one in its own process (to
kill it, or to measure it apart from its clients): ``create_app`` over a
``LocalModelClient`` (tiny models on CPU), served by uvicorn.

Run as ``python tests/serving/app_server.py PORT``; settings come from the ``KILN_*`` environment
as for ``kiln serve`` (``KILN_HOME``, ``KILN_DATABASE_URL``, ``KILN_RESERVATION_LEASE_S``,
``KILN_EVENT_STREAMS_PER_TENANT``, …). Tenants and keys are made by the test through the
same database. Ready when ``GET /healthz`` answers.
"""

from __future__ import annotations

import logging
import sys

import torch
import uvicorn

from serving.api import create_app
from serving.ledger import Ledger
from serving.model_client import LocalModelClient
from serving.settings import Settings
from weights.catalog import load_catalog


def main(port: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings.from_env()
    torch.set_num_threads(settings.effective_torch_threads())
    catalog = load_catalog(settings.home, settings.catalog_path)
    ledger = Ledger(settings.database_url, reservation_lease_s=settings.reservation_lease_s)
    app = create_app(settings, catalog, LocalModelClient(catalog, device="cpu"), ledger=ledger)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(int(sys.argv[1]))
