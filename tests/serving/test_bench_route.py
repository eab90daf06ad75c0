"""``POST /v1/bench/noop`` (KILN_BENCH=1): the serving path's floor — authenticated, one
round trip to the model's side that does no work, never in the OpenAPI document, absent
unless asked for."""

from __future__ import annotations

import dataclasses

from fastapi.testclient import TestClient

from serving.core.model_client import LocalModelClient
from serving.http.app import create_app

NOOP = "/v1/bench/noop"


def _client(settings, catalog) -> tuple[TestClient, dict[str, str]]:  # noqa: ANN001
    app = create_app(settings, catalog, LocalModelClient(catalog, device="cpu"))
    core = app.state.kiln
    key = core.accounts.create_key(core.accounts.create_tenant("bench").id).key
    return TestClient(app), {"authorization": f"Bearer {key}"}


def test_the_floor_route_answers_authenticated_callers_only_when_asked_for(settings, unit_catalog):
    on = dataclasses.replace(settings, bench=True)
    client, auth = _client(on, unit_catalog)
    r = client.post(NOOP, json={"model": "tiny-sdxl"}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "tiny-sdxl" and r.json()["timings"]["server_total"] >= 0
    assert client.post(NOOP, json={"model": "tiny-sdxl"}).status_code == 401
    unknown = client.post(NOOP, json={"model": "nope"}, headers=auth)
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "model"
    assert client.post(NOOP, json={}, headers=auth).status_code == 400
    assert NOOP not in client.get("/openapi.json").json()["paths"]
    assert r.json()["timings"]["held"] < 0.02  # no hold asked: answered at once

    # Held: the model's side answers after the wait, and says how long it held.
    held = client.post(NOOP, json={"model": "tiny-sdxl", "hold_ms": 30}, headers=auth)
    assert held.status_code == 200, held.text
    assert 0.03 <= held.json()["timings"]["held"] <= held.json()["timings"]["server_total"]
    for bad in (-1, 10_001, "long", None, [30]):
        refused = client.post(NOOP, json={"model": "tiny-sdxl", "hold_ms": bad}, headers=auth)
        assert refused.status_code == 400, (bad, refused.text)
        assert refused.json()["error"]["param"] == "hold_ms"
    nan = client.post(
        NOOP,
        content=b'{"model": "tiny-sdxl", "hold_ms": NaN}',
        headers={**auth, "content-type": "application/json"},
    )
    assert nan.status_code == 400, nan.text

    off, auth_off = _client(settings, unit_catalog)
    assert off.post(NOOP, json={"model": "tiny-sdxl"}, headers=auth_off).status_code == 404
