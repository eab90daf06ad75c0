"""Live keys are remembered for a second (serving/core/accounts/key_cache.py): repeated
requests read no key from the database; a revocation is at once in the replica that
revokes and within a second in another replica on the same database (two apps here, as
two ingress replicas are)."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from sqlalchemy import event

from serving.core.accounts import ensure_admin_key
from serving.core.accounts.key_cache import KEY_CACHE_S, KeyCache
from serving.core.model_client import LocalModelClient
from serving.http.app import create_app


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_are_bounded_and_forgotten():
    clock = Clock()
    cache: KeyCache[str] = KeyCache(ttl_s=1.0, capacity=2, clock=clock)
    cache.put("a", "key_a")
    assert cache.get("a") == "key_a"
    clock.now = 0.99
    assert cache.get("a") == "key_a"
    clock.now = 1.0
    assert cache.get("a") is None  # expired: the database is asked again
    cache.put("a", "key_a")
    cache.put("b", "key_b")
    cache.put("c", "key_c")  # past capacity: the oldest goes
    assert cache.get("a") is None and cache.get("b") == "key_b"
    cache.forget(lambda principal: principal == "key_b")
    assert cache.get("b") is None and cache.get("c") == "key_c"
    off: KeyCache[str] = KeyCache(ttl_s=0)
    off.put("a", "key_a")
    assert off.get("a") is None


def _key_reads(engine) -> list[str]:  # noqa: ANN001
    reads: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def count(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if "FROM api_keys" in statement and "key_hash" in statement:
            reads.append(statement)

    return reads


def test_two_replicas_one_database_revocation_at_once_here_within_a_second_there(
    home, settings, unit_catalog
):
    def replica() -> TestClient:
        app = create_app(settings, unit_catalog, LocalModelClient(unit_catalog, device="cpu"))
        return TestClient(app)

    first, second = replica(), replica()
    core = first.app.state.kiln
    admin_key = ensure_admin_key(core.accounts, home, None)
    tenant = core.accounts.create_tenant("studio")
    issued = core.accounts.create_key(tenant.id)
    user = {"authorization": f"Bearer {issued.key}"}
    admin = {"authorization": f"Bearer {admin_key}"}

    reads = _key_reads(second.app.state.kiln.ledger.engine)
    for _ in range(5):
        assert second.get("/v1/credits", headers=user).status_code == 200
    assert len(reads) == 1  # one database read, then four answered from memory

    assert first.get("/v1/credits", headers=user).status_code == 200  # cached there too
    revoked = first.delete(f"/v1/admin/keys/{issued.record.id}", headers=admin)
    assert revoked.status_code == 200, revoked.text
    at = time.monotonic()
    assert first.get("/v1/credits", headers=user).status_code == 401  # at once here
    while second.get("/v1/credits", headers=user).status_code != 401:
        assert time.monotonic() - at < KEY_CACHE_S + 0.5
        time.sleep(0.05)
    assert time.monotonic() - at <= KEY_CACHE_S + 0.5


def test_an_unknown_key_is_never_remembered(settings, unit_catalog):
    app = create_app(settings, unit_catalog, LocalModelClient(unit_catalog, device="cpu"))
    client = TestClient(app)
    reads = _key_reads(app.state.kiln.ledger.engine)
    for _ in range(3):
        assert (
            client.get("/v1/credits", headers={"authorization": "Bearer kiln_x"}).status_code == 401
        )
    assert len(reads) == 3
    # A key issued now works at once (no remembered refusal stands in its way).
    core = app.state.kiln
    issued = core.accounts.create_key(core.accounts.create_tenant("t").id)
    ok = client.get("/v1/credits", headers={"authorization": f"Bearer {issued.key}"})
    assert ok.status_code == 200
