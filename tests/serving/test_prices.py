"""``GET /v1/prices``: the catalog's operation prices, for a client to show before paying."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_prices_list_every_operation_of_the_catalog(client: TestClient, unit_catalog):
    r = client.get("/v1/prices")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "prices"
    assert body["operations"] == unit_catalog.prices
    # The ones a prompt bar shows before a purchase.
    assert {"license", "upscale", "remove_background", "vectorize", "agentic"} <= set(
        body["operations"]
    )


def test_prices_need_a_key(client: TestClient):
    r = client.get("/v1/prices", headers={"authorization": ""})
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"]
