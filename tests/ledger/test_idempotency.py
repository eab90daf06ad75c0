"""Idempotency keys with Stripe's semantics: replay, body conflict, in-flight conflict."""

from __future__ import annotations

import json
import threading

import pytest
from invariants import assert_consistent

from serving.ledger import (
    Balance,
    IdempotencyConflict,
    Ledger,
    StoredResponse,
    body_hash,
)


def generate(ledger: Ledger, tenant_id: str, key: str, body: bytes) -> StoredResponse:
    """What the route will do: claim the key, charge, store the answer; or replay it."""
    stored = ledger.idempotency.begin(tenant_id, key, body_hash(body))
    if stored is not None:
        return stored
    n = json.loads(body)["n"]
    reservation = ledger.reserve(tenant_id, n, reference=key)
    for _ in range(n):
        ledger.capture(reservation, 1)
    ledger.release(reservation)
    response = StoredResponse(200, json.dumps({"charged": n, "id": reservation.id}).encode())
    ledger.idempotency.finish(tenant_id, key, response.status, response.body)
    return response


def test_same_key_and_body_replays_without_charging_again(ledger: Ledger):
    tenant = ledger.create_tenant("studio")
    ledger.grant(tenant.id, 10)
    body = b'{"n": 3}'
    first = generate(ledger, tenant.id, "key-1", body)
    again = generate(ledger, tenant.id, "key-1", body)
    assert again == first and json.loads(again.body)["charged"] == 3
    assert assert_consistent(ledger, tenant.id) == Balance(available=7, held=0)
    # Keys belong to a tenant: another tenant's same key is a new request.
    other = ledger.create_tenant("other")
    ledger.grant(other.id, 5)
    assert generate(ledger, other.id, "key-1", body) != first
    assert ledger.balance(other.id) == Balance(available=2, held=0)


def test_same_key_with_another_body_is_a_conflict(ledger: Ledger):
    tenant = ledger.create_tenant("studio")
    ledger.grant(tenant.id, 10)
    generate(ledger, tenant.id, "key-1", b'{"n": 1}')
    with pytest.raises(IdempotencyConflict) as caught:
        generate(ledger, tenant.id, "key-1", b'{"n": 2}')
    assert caught.value.reason == "body_mismatch"
    assert ledger.balance(tenant.id) == Balance(available=9, held=0)


def test_in_flight_key_is_a_conflict_until_finished_or_abandoned(ledger: Ledger):
    tenant = ledger.create_tenant("studio")
    keys = ledger.idempotency
    digest = body_hash(b"{}")
    assert keys.begin(tenant.id, "k", digest) is None
    with pytest.raises(IdempotencyConflict) as caught:
        keys.begin(tenant.id, "k", digest)
    assert caught.value.reason == "in_flight"
    keys.abandon(tenant.id, "k")  # e.g. the request failed validation: nothing to replay
    assert keys.begin(tenant.id, "k", digest) is None
    keys.finish(tenant.id, "k", 201, b"done")
    assert keys.begin(tenant.id, "k", digest) == StoredResponse(201, b"done")
    keys.abandon(tenant.id, "k")  # a finished key stays
    assert keys.begin(tenant.id, "k", digest) == StoredResponse(201, b"done")


def test_concurrent_claims_of_one_key_let_exactly_one_through(ledger: Ledger):
    tenant = ledger.create_tenant("studio")
    start = threading.Barrier(12)
    outcomes: list[str] = []
    lock = threading.Lock()

    def claim() -> None:
        start.wait()
        try:
            outcome = "new" if ledger.idempotency.begin(tenant.id, "k", "h") is None else "replay"
        except IdempotencyConflict as exc:
            outcome = exc.reason
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=claim) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["in_flight"] * 11 + ["new"]
