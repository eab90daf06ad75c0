"""Charging through the whole app (auth, reserve, capture, release) on SQLite and on
PostgreSQL, with an instant stand-in for the model deployments defined here: the ledger
is what is under test, not the pipelines (tests/e2e runs the real ones over HTTP).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import numpy as np
import pytest
from secrets_for_tests import TEST_SECRET

from pipelines.output import GenerationOutput
from pipelines.params import GenerationParams
from serving.core.assets.store import BlobStore
from serving.core.ledger import Ledger
from serving.core.settings import Settings
from serving.http.app import create_app
from weights.catalog import Catalog

GEN = "/v1/generations"
OPENAI = "/v1/images/generations"
CHEAP = {"model": "tiny-sdxl", "prompt": "a kiln", "resolution": "128px"}


class InstantModels:
    """Answers every request with black images after a short wait, or fails."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls = 0

    async def generate(self, params: GenerationParams) -> GenerationOutput:
        self.calls += 1
        await asyncio.sleep(0.01)
        if self.fail:
            raise RuntimeError("the model's replica died")
        image = np.zeros((params.height, params.width, 3), dtype=np.uint8)
        return GenerationOutput([image] * params.n, tuple(range(params.n)))

    def unready(self) -> list[str]:
        return []


def tenant_with(app, credits: int) -> dict[str, str]:
    state = app.state.kiln
    tenant = state.accounts.create_tenant("studio")
    state.ledger.grant(tenant.id, credits)
    return {"authorization": f"Bearer {state.accounts.create_key(tenant.id).key}"}


async def post_all(app, headers: dict[str, str], bodies: list[tuple[str, dict]]) -> list:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://kiln") as client:
        return await asyncio.gather(
            *(client.post(path, json=body, headers=headers) for path, body in bodies)
        )


@pytest.fixture
def ledger(db_url: str):
    with Ledger(db_url, pool_size=20) as opened:
        yield opened


def test_forty_concurrent_requests_from_ten_credits(
    home: Path, unit_catalog: Catalog, ledger: Ledger
):
    models = InstantModels()
    app = create_app(Settings(home=home, secret=TEST_SECRET), unit_catalog, models, ledger=ledger)
    headers = tenant_with(app, 10)
    openai_body = {"model": "tiny-sdxl", "prompt": "a kiln", "size": "128x128"}
    bodies = [(GEN, {**CHEAP, "seed": i}) if i % 2 else (OPENAI, openai_body) for i in range(40)]
    responses = asyncio.run(post_all(app, headers, bodies))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 10 and statuses.count(402) == 30, statuses
    assert models.calls == 10  # the 402s never reached a model
    assert all(r.headers["x-should-retry"] == "false" for r in responses if r.status_code == 402)
    credits = asyncio.run(get_json(app, headers, "/v1/credits?limit=1000"))
    assert (credits["balance"], credits["held"]) == (0, 0)
    assert sum(e["amount"] for e in credits["entries"]) == 0
    assert sum(e["held"] for e in credits["entries"]) == 0


def test_a_failing_model_charges_nothing(home: Path, unit_catalog: Catalog, ledger: Ledger):
    models = InstantModels(fail=True)
    app = create_app(Settings(home=home, secret=TEST_SECRET), unit_catalog, models, ledger=ledger)
    headers = tenant_with(app, 10)
    responses = asyncio.run(post_all(app, headers, [(GEN, {**CHEAP, "n": 4})]))
    assert responses[0].status_code == 500
    credits = asyncio.run(get_json(app, headers, "/v1/credits"))
    assert (credits["balance"], credits["held"]) == (10, 0)
    assert [e["kind"] for e in credits["entries"]] == ["release", "reserve", "grant"]


async def get_json(app, headers: dict[str, str], path: str) -> dict:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://kiln") as client:
        r = await client.get(path, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


class RefusingStore(BlobStore):
    """A real blob store whose disk is full."""

    def put(self, data: bytes, media_type: str) -> str:
        raise OSError("No space left on device")


def test_an_image_that_cannot_be_stored_rolls_its_settlement_back(
    home: Path, unit_catalog: Catalog, ledger: Ledger
):
    app = create_app(
        Settings(home=home, secret=TEST_SECRET), unit_catalog, InstantModels(), ledger=ledger
    )
    headers = tenant_with(app, 10)
    app.state.kiln.assets.store = RefusingStore(home / "full")
    responses = asyncio.run(post_all(app, headers, [(GEN, {**CHEAP, "n": 2})]))
    assert responses[0].status_code == 500
    credits = asyncio.run(get_json(app, headers, "/v1/credits"))
    assert (credits["balance"], credits["held"]) == (10, 0)  # nothing captured
    assert [e["kind"] for e in credits["entries"]] == ["release", "reserve", "grant"]
    assets = asyncio.run(get_json(app, headers, "/v1/assets"))
    assert assets["data"] == []  # no row without its settlement
