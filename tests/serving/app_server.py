"""A real Kiln HTTP server without Ray, for tests that need one in its own process (to
kill it, or to measure it apart from its clients): ``create_app`` over a
``LocalModelClient`` (tiny models on CPU), served by uvicorn.

``start(home, database_url, log, env)`` runs ``python tests/serving/app_server.py PORT``
on a free port and returns once ``GET /healthz`` answers. Settings come from the
``KILN_*`` environment as for ``kiln serve`` (``KILN_HOME``, ``KILN_DATABASE_URL``,
``KILN_RESERVATION_LEASE_S``, ``KILN_EVENT_STREAMS_PER_TENANT``, …); tenants and keys are
made by the test through the same database.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from serving.cli.ports import free_port

STARTUP_TIMEOUT_S = 120


def start(
    home: Path, database_url: str, log: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, str]:
    """This server over ``home`` and ``database_url`` (its output appended to ``log``);
    the process and its URL, once it answers."""
    import httpx
    from secrets_for_tests import TEST_SECRET

    port = free_port()
    environ = {
        **os.environ,
        "KILN_HOME": str(home),
        "KILN_DATABASE_URL": database_url,
        "KILN_SECRET": TEST_SECRET,
        "KILN_TORCH_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        **(env or {}),
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, __file__, str(port)], env=environ, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the server did not answer:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def main(port: int) -> None:
    import torch
    import uvicorn

    from serving.core.model_client import LocalModelClient
    from serving.core.settings import Settings
    from serving.http.app import create_app
    from weights.catalog import load_catalog

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings.from_env()
    torch.set_num_threads(settings.effective_torch_threads())
    catalog = load_catalog(settings.home, settings.catalog_path)
    # The app opens its ledger from the settings, KILN_RESERVATION_LEASE_S included.
    app = create_app(settings, catalog, LocalModelClient(catalog, device="cpu"))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(int(sys.argv[1]))
