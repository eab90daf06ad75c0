"""Accounts on the live server: the admin key it starts with, tenants made over HTTP."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

# The session server's KILN_ADMIN_KEY.
ADMIN_KEY = "kiln_e2e-admin-key-not-for-production-0001"


@dataclass(frozen=True)
class TenantKey:
    """A tenant created over HTTP and one of its keys."""

    id: str
    key: str
    key_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.key}"}


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def create_tenant(url: str, name: str, credits: int) -> TenantKey:
    """A new tenant with one key and ``credits``, through the admin routes."""
    admin = bearer(ADMIN_KEY)
    r = httpx.post(f"{url}/v1/admin/tenants", json={"name": name}, headers=admin)
    assert r.status_code == 201, r.text
    tenant_id = r.json()["id"]
    r = httpx.post(f"{url}/v1/admin/tenants/{tenant_id}/keys", headers=admin)
    assert r.status_code == 201, r.text
    key = r.json()
    if credits:
        r = httpx.post(
            f"{url}/v1/admin/tenants/{tenant_id}/credits", json={"amount": credits}, headers=admin
        )
        assert r.status_code == 200 and r.json()["balance"] == credits, r.text
    return TenantKey(tenant_id, key["key"], key["id"])


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    """The error object of ``response``, checked to be DESIGN.md §5's shape and ``code``."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code, error
    assert response.headers["x-request-id"]
    return error


def credits_of(url: str, key: str) -> dict:
    """``GET /v1/credits`` with every entry."""
    r = httpx.get(f"{url}/v1/credits", params={"limit": 1000}, headers=bearer(key), timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def assert_forty_requests_spend_exactly_ten(url: str, tenant_name: str) -> TenantKey:
    """40 concurrent n=1 requests (native and OpenAI, 1 credit each) from a tenant holding
    10 credits: exactly 10 succeed, 30 get 402 that the SDK must not retry, and the ledger
    adds up to a zero balance with nothing held. Returns the tenant."""
    user = create_tenant(url, tenant_name, 10)
    model = "tiny-sdxl"  # 1 credit an image at 128px

    def one(i: int) -> httpx.Response:
        if i % 2:
            path = "/v1/images/generations"
            body = {"model": model, "prompt": f"r{i}", "size": "128x128", "steps": 1}
        else:
            path = "/v1/generations"
            body = {"model": model, "prompt": "a kiln", "resolution": "128px", "steps": 1}
            body["seed"] = i
        return httpx.post(f"{url}{path}", json=body, headers=user.headers, timeout=120)

    with ThreadPoolExecutor(40) as pool:
        responses = list(pool.map(one, range(40)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 10 and statuses.count(402) == 30, statuses
    for r in responses:
        if r.status_code == 402:
            assert_error(r, 402, "insufficient_credits")
            assert r.headers["x-should-retry"] == "false"
        elif "credits_charged" in r.json():
            assert r.json()["credits_charged"] == 1
    credits = credits_of(url, user.key)
    assert (credits["balance"], credits["held"]) == (0, 0)
    assert sum(e["amount"] for e in credits["entries"]) == credits["balance"] == 0
    assert sum(e["held"] for e in credits["entries"]) == credits["held"] == 0
    assert [e["kind"] for e in credits["entries"]].count("capture") == 10
    return user
