"""Accounts on the live server: the admin key it starts with, tenants made over HTTP."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

# The session server's KILN_ADMIN_KEY.
ADMIN_KEY = "kiln_e2e-admin-key-not-secret"


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
