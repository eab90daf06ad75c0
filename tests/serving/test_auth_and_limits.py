"""Accounts in the app without Ray: the first admin key, 402 before any work, the
concurrency cap, idempotency keys in flight, key hashing."""

from __future__ import annotations

import stat
from pathlib import Path

from fastapi.testclient import TestClient
from secrets_for_tests import TEST_SECRET

from serving.core.accounts import Accounts, ensure_admin_key, hash_key, prepare_admin
from serving.core.ledger import Ledger, body_hash
from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings
from serving.http.app import create_app
from weights.catalog import load_catalog

GEN = "/v1/generations"
CHEAP = {"model": "tiny-sdxl", "prompt": "a kiln", "steps": 1}
CONFIGURED_KEY = "kiln_configured-admin-key-for-tests-0001"


def test_first_admin_key_is_generated_once_into_a_private_file(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'kiln.db'}"
    key = prepare_admin(url, tmp_path, None)
    assert key is not None and key.startswith("kiln_")
    path = tmp_path / "admin.key"
    assert path.read_text().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert prepare_admin(url, tmp_path, None) is None  # later starts generate nothing
    with Ledger(url) as ledger:
        accounts = Accounts(ledger)
        principal = accounts.authenticate(key)
        assert principal is not None and principal.is_admin
        assert accounts.authenticate(key + "x") is None
        # Only the hash is stored.
        with ledger.engine.connect() as conn:
            dump = "\n".join(str(row) for row in conn.exec_driver_sql("SELECT * FROM api_keys"))
        assert key not in dump and hash_key(key) in dump


def test_configured_admin_key_is_ensured_at_every_start(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'kiln.db'}"
    with Ledger(url) as ledger:
        accounts = Accounts(ledger)
        assert ensure_admin_key(accounts, tmp_path, CONFIGURED_KEY) is None
        principal = accounts.authenticate(CONFIGURED_KEY)
        assert principal is not None and principal.is_admin
        accounts.revoke(principal.key_id)
        assert accounts.authenticate(CONFIGURED_KEY) is None
        ensure_admin_key(accounts, tmp_path, CONFIGURED_KEY)  # a restart revives it
        assert accounts.authenticate(CONFIGURED_KEY) is not None
    assert not (tmp_path / "admin.key").exists()


def test_admin_key_works_on_the_admin_routes(home: Path, settings: Settings, unit_catalog):
    app = create_app(settings, unit_catalog, LocalModelClient(unit_catalog))
    admin_key = ensure_admin_key(app.state.kiln.accounts, home, None)
    admin = TestClient(app, headers={"authorization": f"Bearer {admin_key}"})
    tenant = admin.post("/v1/admin/tenants", json={"name": "studio"})
    assert tenant.status_code == 201 and tenant.json()["name"] == "studio"
    key = admin.post(f"/v1/admin/tenants/{tenant.json()['id']}/keys").json()
    assert key["role"] == "tenant" and key["prefix"] == key["key"][:12]
    assert admin.post("/v1/admin/tenants", json={"name": ""}).status_code == 400


def test_not_enough_credits_is_402_before_any_work(client: TestClient, make_client):
    broke = make_client(client.app, credits=0, name="broke")
    # LocalModelClient would load the (unbuilt) tiny model: a 402 proves nothing ran.
    r = broke.post(GEN, json=CHEAP)
    assert r.status_code == 402, r.text
    assert r.headers["x-should-retry"] == "false"
    assert r.json()["error"]["code"] == "insufficient_credits"
    assert broke.get("/v1/credits").json() == {
        "object": "credits", "balance": 0, "held": 0, "entries": []
    }  # fmt: skip


def test_validation_errors_charge_nothing(client: TestClient):
    assert client.post(GEN, json={**CHEAP, "n": 13}).status_code == 400
    assert client.post(GEN, json={**CHEAP, "resolution": "9px"}).status_code == 400
    entries = client.get("/v1/credits").json()["entries"]
    assert [e["kind"] for e in entries] == ["grant"]


def test_tenant_over_its_concurrency_cap_gets_429(home: Path, make_client):
    (home / "models.toml").write_text(
        '[models.ghost]\nkind = "base"\nfamily = "sd15"\nsource = "models/ghost"\n'
        'aspect_ratios = ["1:1"]\nresolutions = {"64px" = 64}\ncredits = {"64px" = 1}\n'
    )
    catalog = load_catalog(home)
    settings = Settings(home=home, secret=TEST_SECRET, tenant_max_concurrent=1)
    app = create_app(settings, catalog, LocalModelClient(catalog, device="cpu"))
    client = make_client(app)
    other = make_client(app, name="other")
    limiter = app.state.kiln.limiter
    body = {"model": "ghost", "prompt": "boo"}
    # One request of this tenant is running (held in the database, as another ingress
    # process would hold it).
    held = limiter.acquire(client.tenant_id)
    assert held is not None and limiter.in_use(client.tenant_id) == 1
    r = client.post(GEN, json=body)
    assert r.status_code == 429, r.text
    assert r.headers["retry-after"] == "1"
    assert r.json()["error"]["code"] == "tenant_concurrency_limit"
    assert other.post(GEN, json=body).status_code == 500  # past the cap: the ghost fails
    limiter.release(held)
    assert client.post(GEN, json=body).status_code == 500
    assert limiter.in_use(client.tenant_id) == limiter.in_use(other.tenant_id) == 0


def test_idempotency_key_in_flight_is_409(client: TestClient):
    ledger = client.app.state.kiln.ledger
    ledger.idempotency.begin(client.tenant_id, "busy", "some-other-request")
    r = client.post(GEN, json=CHEAP, headers={"idempotency-key": "busy"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "idempotency_key_reused"
    body = b'{"model": "tiny-sdxl", "prompt": "a kiln", "steps": 1}'
    ledger.idempotency.begin(client.tenant_id, "running", body_hash(GEN.encode() + b"\n" + body))
    r = client.post(
        GEN,
        content=body,
        headers={"idempotency-key": "running", "content-type": "application/json"},
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "idempotency_key_in_flight"
    assert [e["kind"] for e in client.get("/v1/credits").json()["entries"]] == ["grant"]


def test_authenticating_does_not_wait_for_a_writer(tmp_path: Path):
    """Every request authenticates; on SQLite that read must not queue behind the write
    lock another request holds (a long ledger transaction, a migration)."""
    import time

    with Ledger(f"sqlite:///{tmp_path / 'kiln.db'}") as ledger:
        accounts = Accounts(ledger)
        tenant = accounts.create_tenant("studio")
        key = accounts.create_key(tenant.id).key
        with ledger.engine.begin() as writer:  # BEGIN IMMEDIATE: holds the write lock
            writer.exec_driver_sql("UPDATE tenants SET name = 'held' WHERE id = ?", (tenant.id,))
            started = time.perf_counter()
            principal = accounts.authenticate(key)
            waited = time.perf_counter() - started
        assert principal is not None and principal.tenant_id == tenant.id
        assert waited < 1.0, f"authentication waited {waited:.1f}s for the writer"
