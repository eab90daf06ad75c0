"""Keys, admin routes, credits, idempotency and no double spending, on the live server."""

from __future__ import annotations

import httpx
import openai
import pytest
from live_accounts import (
    ADMIN_KEY,
    assert_error,
    assert_forty_requests_spend_exactly_ten,
    bearer,
    create_tenant,
    credits_of,
)
from openai import OpenAI

MODEL = "tiny-sdxl"  # 1 credit an image at 128px
CHEAP = {"model": MODEL, "prompt": "a kiln", "resolution": "128px", "steps": 1}
PROTECTED = [
    ("GET", "/v1/models", None),
    ("GET", "/v1/models/tiny-sdxl", None),
    ("POST", "/v1/generations", CHEAP),
    ("POST", "/v1/images/generations", {"model": MODEL, "prompt": "x", "size": "128x128"}),
    ("GET", "/v1/credits", None),
    ("POST", "/v1/admin/tenants", {"name": "x"}),
]


def call(url: str, method: str, path: str, body: dict | None, headers: dict) -> httpx.Response:
    return httpx.request(method, f"{url}{path}", json=body, headers=headers, timeout=120)


@pytest.mark.parametrize("method, path, body", PROTECTED)
def test_missing_unknown_and_revoked_keys_are_401(server, method, path, body):
    user = create_tenant(server.url, "revoked soon", 0)
    assert call(server.url, "GET", "/v1/models", None, user.headers).status_code == 200
    admin = bearer(ADMIN_KEY)
    r = httpx.delete(f"{server.url}/v1/admin/keys/{user.key_id}", headers=admin)
    assert r.status_code == 200 and r.json()["revoked_at"], r.text
    for headers in ({}, bearer("kiln_not-a-key"), {"authorization": "Basic abc"}, user.headers):
        r = call(server.url, method, path, body, headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["error"]["type"] == "authentication_error"
        assert r.headers["www-authenticate"] == "Bearer"


def test_public_routes_need_no_key(server):
    for path in ("/healthz", "/metrics", "/docs", "/openapi.json"):
        assert httpx.get(f"{server.url}{path}").status_code == 200, path


def test_admin_routes_are_403_for_a_tenant_key(http, tenant):
    for method, path, body in [
        ("POST", "/v1/admin/tenants", {"name": "x"}),
        ("POST", f"/v1/admin/tenants/{tenant.id}/keys", None),
        ("GET", f"/v1/admin/tenants/{tenant.id}/keys", None),
        ("DELETE", f"/v1/admin/keys/{tenant.key_id}", None),
        ("POST", f"/v1/admin/tenants/{tenant.id}/credits", {"amount": 5}),
    ]:
        error = assert_error(http.request(method, path, json=body), 403, "admin_required")
        assert error["type"] == "permission_error"
    assert http.get("/v1/models").status_code == 200  # the key was not revoked


def test_keys_are_listed_by_prefix_only(server, admin_http):
    user = create_tenant(server.url, "listed", 0)
    second = admin_http.post(f"/v1/admin/tenants/{user.id}/keys").json()
    assert second["key"].startswith("kiln_") and second["key"] != user.key
    admin_http.delete(f"/v1/admin/keys/{second['id']}")
    r = admin_http.get(f"/v1/admin/tenants/{user.id}/keys")
    assert r.status_code == 200
    keys = r.json()["data"]
    assert [k["id"] for k in keys] == [user.key_id, second["id"]]
    assert all("key" not in k for k in keys)
    assert user.key not in r.text and second["key"] not in r.text
    assert [k["prefix"] for k in keys] == [user.key[:12], second["key"][:12]]
    assert keys[0]["revoked_at"] is None and keys[1]["revoked_at"] is not None
    assert_error(admin_http.get("/v1/admin/tenants/ten_nope/keys"), 404, "tenant_not_found")
    assert_error(admin_http.delete("/v1/admin/keys/key_nope"), 404, "key_not_found")


def test_credits_route_and_what_a_generation_charged(server, admin_http):
    user = create_tenant(server.url, "charged", 10)
    r = httpx.post(
        f"{server.url}/v1/generations", json={**CHEAP, "n": 3}, headers=user.headers, timeout=120
    )
    assert r.status_code == 200 and r.json()["credits_charged"] == 3, r.text
    r = httpx.post(
        f"{server.url}/v1/generations",
        json={**CHEAP, "resolution": "256px"},  # 2 credits at 256px
        headers=user.headers,
        timeout=120,
    )
    assert r.status_code == 200 and r.json()["credits_charged"] == 2, r.text
    credits = credits_of(server.url, user.key)
    assert (credits["balance"], credits["held"]) == (5, 0)
    kinds = [e["kind"] for e in reversed(credits["entries"])]
    assert kinds == ["grant", "reserve", "capture", "capture", "capture", "reserve", "capture"]
    assert sum(e["amount"] for e in credits["entries"]) == credits["balance"]
    granted = admin_http.post(f"/v1/admin/tenants/{user.id}/credits", json={"amount": 7})
    assert granted.json()["balance"] == 12
    bad = admin_http.post(f"/v1/admin/tenants/{user.id}/credits", json={"amount": 0})
    assert bad.status_code == 400
    for amount in (2**63 - 1, 10**30):  # a 500, and a balance no read could parse after
        past = admin_http.post(f"/v1/admin/tenants/{user.id}/credits", json={"amount": amount})
        assert past.status_code == 400, past.text
        assert (past.json()["error"]["param"], past.json()["error"]["code"]) == (
            "amount",
            "credits_limit",
        )
    assert credits_of(server.url, user.key)["balance"] == 12


def test_forty_concurrent_requests_from_ten_credits(server):
    assert_forty_requests_spend_exactly_ten(server.url, "ten credits")


def test_openai_sdk_sees_402_and_does_not_retry(server):
    user = create_tenant(server.url, "broke", 0)
    client = OpenAI(base_url=f"{server.url}/v1", api_key=user.key, max_retries=3, timeout=60)
    with pytest.raises(openai.APIStatusError) as caught:
        client.images.generate(model=MODEL, prompt="x", size="128x128")
    assert caught.value.status_code == 402
    assert caught.value.response.headers["x-should-retry"] == "false"


def test_idempotent_replay_charges_once_and_a_changed_body_is_409(server):
    user = create_tenant(server.url, "idempotent", 5)
    for path, body in [
        ("/v1/generations", {**CHEAP, "seed": 7}),
        ("/v1/images/generations", {"model": MODEL, "prompt": "i", "size": "128x128"}),
    ]:
        headers = {**user.headers, "idempotency-key": f"order-{path}"}
        first = call(server.url, "POST", path, body, headers)
        again = call(server.url, "POST", path, body, headers)
        assert first.status_code == again.status_code == 200, first.text
        assert again.content == first.content
        assert again.headers["idempotent-replayed"] == "true"
        changed = call(server.url, "POST", path, {**body, "prompt": "other"}, headers)
        error = assert_error(changed, 409, "idempotency_key_reused")
        assert error["param"] == "Idempotency-Key"
    credits = credits_of(server.url, user.key)
    assert credits["balance"] == 3  # one image each, charged once
    assert [e["kind"] for e in credits["entries"]].count("reserve") == 2
