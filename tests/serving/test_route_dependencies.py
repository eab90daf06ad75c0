"""A request's dependencies (the core, the caller's tenant) resolve on the event loop:
FastAPI runs a plain ``def`` dependency on its thread pool, one thread hop on every
request for work that only reads an attribute or awaits."""

from __future__ import annotations

from dataclasses import replace

import fastapi.dependencies.utils as fastapi_dependencies
import pytest
from fastapi.testclient import TestClient

from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings
from serving.http.app import create_app
from weights.catalog import Catalog


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What FastAPI sends to its thread pool while resolving dependencies (recorded, then
    run as FastAPI would)."""
    recorded: list[str] = []
    run = fastapi_dependencies.run_in_threadpool

    async def recording(call, *args, **kwargs):
        recorded.append(getattr(call, "__qualname__", repr(call)))
        return await run(call, *args, **kwargs)

    monkeypatch.setattr(fastapi_dependencies, "run_in_threadpool", recording)
    return recorded


def test_a_request_resolves_its_dependencies_on_the_event_loop(
    settings: Settings, unit_catalog: Catalog, make_client, hops: list[str]
):
    bench = replace(settings, bench=True)
    app = create_app(bench, unit_catalog, LocalModelClient(unit_catalog, device="cpu"))
    client: TestClient = make_client(app)
    assert client.get("/v1/credits").status_code == 200
    noop = client.post("/v1/bench/noop", json={"model": "tiny-sd15"})
    assert noop.status_code == 200, noop.text
    assert hops == []
