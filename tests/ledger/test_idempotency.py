"""Idempotency keys with Stripe's semantics: replay, body conflict, in-flight conflict;
keys expire after a day, a crashed claim is taken over after its lease, old rows purge."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from invariants import assert_consistent
from sqlalchemy import func, select

from serving.core.ledger import (
    Balance,
    IdempotencyConflict,
    IdempotencyKeys,
    Ledger,
    StoredResponse,
    body_hash,
)
from serving.core.ledger.idempotency import IN_FLIGHT_LEASE, KEY_TTL, ClaimLost
from serving.core.ledger.schema import idempotency_keys


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


def race(keys: IdempotencyKeys, tenant_id: str, hashes: list[str], now: datetime) -> list[str]:
    """``begin`` from one thread per hash, all at once; each thread's outcome."""
    start = threading.Barrier(len(hashes))
    outcomes: list[str] = []
    lock = threading.Lock()

    def claim(request_hash: str) -> None:
        start.wait()
        try:
            stored = keys.begin(tenant_id, "k", request_hash, now=now)
            outcome = "new" if stored is None else "replay"
        except IdempotencyConflict as exc:
            outcome = exc.reason
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=claim, args=(h,)) for h in hashes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def rows(ledger: Ledger) -> int:
    with ledger.engine.begin() as conn:
        return conn.execute(select(func.count()).select_from(idempotency_keys)).scalar_one()


def test_an_expired_key_is_a_new_request(ledger: Ledger):
    tenant = ledger.create_tenant("studio")
    keys = IdempotencyKeys(ledger.engine, purge_every=None)  # the row stays to be replaced
    t0 = datetime.now(UTC) - KEY_TTL - timedelta(minutes=1)
    assert keys.begin(tenant.id, "k", "first", now=t0) is None
    keys.finish(tenant.id, "k", 200, b"old answer")
    # Within the day: replayed, and another body is a conflict.
    almost = t0 + KEY_TTL - timedelta(seconds=1)
    assert keys.begin(tenant.id, "k", "first", now=almost) == StoredResponse(200, b"old answer")
    with pytest.raises(IdempotencyConflict, match="different request body"):
        keys.begin(tenant.id, "k", "second", now=almost)
    # A day on: the same key is a new request, with any body; the old answer is gone.
    assert keys.begin(tenant.id, "k", "second") is None
    with pytest.raises(IdempotencyConflict) as caught:
        keys.begin(tenant.id, "k", "second")
    assert caught.value.reason == "in_flight"
    keys.finish(tenant.id, "k", 201, b"new answer")
    assert keys.begin(tenant.id, "k", "second") == StoredResponse(201, b"new answer")
    assert rows(ledger) == 1


def test_a_stale_in_flight_claim_is_taken_over_by_the_same_body(ledger: Ledger):
    tenant = ledger.create_tenant("studio")
    keys = ledger.idempotency
    crashed = datetime.now(UTC) - IN_FLIGHT_LEASE - timedelta(seconds=1)
    assert keys.begin(tenant.id, "k", "h", now=crashed) is None  # its process then died
    with pytest.raises(IdempotencyConflict) as caught:
        keys.begin(tenant.id, "k", "another body")
    assert caught.value.reason == "body_mismatch"  # a stale claim is still that body's
    retry = datetime.now(UTC)
    assert keys.begin(tenant.id, "k", "h", now=retry) is None  # taken over: go on
    with pytest.raises(IdempotencyConflict) as caught:
        keys.begin(tenant.id, "k", "h")
    assert caught.value.reason == "in_flight"  # the new claim is fresh
    # Were the first request still alive, it could neither abandon nor finish the retry's claim.
    keys.abandon(tenant.id, "k", claimed=crashed)
    with pytest.raises(ClaimLost):
        keys.finish(tenant.id, "k", 200, b"late", claimed=crashed)
    keys.finish(tenant.id, "k", 200, b"retry's answer", claimed=retry)
    assert keys.begin(tenant.id, "k", "h") == StoredResponse(200, b"retry's answer")


def test_a_fresh_in_flight_claim_is_still_a_conflict(ledger: Ledger):
    tenant = ledger.create_tenant("studio")
    keys = ledger.idempotency
    started = datetime.now(UTC) - IN_FLIGHT_LEASE + timedelta(seconds=30)
    assert keys.begin(tenant.id, "k", "h", now=started) is None
    with pytest.raises(IdempotencyConflict) as caught:
        keys.begin(tenant.id, "k", "h")
    assert caught.value.reason == "in_flight"
    keys.finish(tenant.id, "k", 200, b"done", claimed=started)
    # A finished key is replayed however old its claim, within the day.
    later = started + IN_FLIGHT_LEASE * 3
    assert keys.begin(tenant.id, "k", "h", now=later) == StoredResponse(200, b"done")


def test_racing_takeovers_of_a_stale_claim_let_exactly_one_through(ledger: Ledger):
    tenant = ledger.create_tenant("studio")
    keys = ledger.idempotency
    stale = datetime.now(UTC) - IN_FLIGHT_LEASE - timedelta(minutes=1)
    assert keys.begin(tenant.id, "k", "h", now=stale) is None
    outcomes = race(keys, tenant.id, ["h"] * 12, datetime.now(UTC))
    assert sorted(outcomes) == ["in_flight"] * 11 + ["new"]


def test_racing_requests_for_an_expired_key_let_exactly_one_through(ledger: Ledger):
    tenant = ledger.create_tenant("studio")
    keys = IdempotencyKeys(ledger.engine, purge_every=None)
    old = datetime.now(UTC) - KEY_TTL - timedelta(hours=1)
    assert keys.begin(tenant.id, "k", "old body", now=old) is None
    keys.finish(tenant.id, "k", 200, b"old")
    # Twelve new requests, six bodies: one wins; the rest see its fresh claim.
    outcomes = race(keys, tenant.id, [f"body {i % 6}" for i in range(12)], datetime.now(UTC))
    assert outcomes.count("new") == 1
    assert set(outcomes) <= {"new", "in_flight", "body_mismatch"}
    assert outcomes.count("in_flight") == 1  # the winner's twin; other bodies mismatch
    assert rows(ledger) == 1


def test_expired_keys_are_purged(ledger: Ledger):
    tenant = ledger.create_tenant("studio")
    keys = IdempotencyKeys(ledger.engine, purge_every=None)
    now = datetime.now(UTC)
    keys.begin(tenant.id, "done-old", "h", now=now - KEY_TTL - timedelta(seconds=1))
    keys.finish(tenant.id, "done-old", 200, b"x")
    keys.begin(tenant.id, "crashed-old", "h", now=now - 2 * KEY_TTL)
    keys.begin(tenant.id, "recent", "h", now=now - KEY_TTL + timedelta(minutes=1))
    assert keys.purge_expired(now) == 2
    assert rows(ledger) == 1
    assert keys.purge_expired(now) == 0
    # ``begin`` purges by itself, at most once per PURGE_EVERY per process.
    keys.begin(tenant.id, "old-again", "h", now=now - KEY_TTL - timedelta(hours=2))
    purging = IdempotencyKeys(ledger.engine)
    assert purging.begin(tenant.id, "fresh", "h", now=now) is None
    assert rows(ledger) == 2  # "recent" and "fresh"
    keys.begin(tenant.id, "old-once-more", "h", now=now - KEY_TTL - timedelta(hours=2))
    assert purging.begin(tenant.id, "fresh-2", "h", now=now) is None
    assert rows(ledger) == 4  # not purged again within the hour
