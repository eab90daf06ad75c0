"""Reservation leases on SQLite and PostgreSQL: a reservation holds its credits for one
lease unless renewed; the sweeper releases expired ones; settling a swept reservation is
a logged no-op (no second refund, no charge); reads do not wait for SQLite's write lock.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from datetime import timedelta

import pytest
from invariants import assert_consistent
from sqlalchemy import select

from serving.core.ledger import Balance, InsufficientCredits, Ledger, LedgerError
from serving.core.ledger.db import downgrade, migrate
from serving.core.ledger.ledger import now
from serving.core.ledger.schema import reservations

LEASE = timedelta(seconds=600)  # the ledger fixture's: KILN_RESERVATION_LEASE_S's default


def lease_of(ledger: Ledger, reservation_id: str):
    with ledger.engine.connect() as conn:
        return conn.execute(
            select(reservations.c.expires, reservations.c.state, reservations.c.swept_at).where(
                reservations.c.id == reservation_id
            )
        ).one()


def test_a_reservation_holds_for_a_lease_that_renewing_pushes_on(ledger: Ledger):
    tenant = ledger.create_tenant("studio")
    ledger.grant(tenant.id, 10)
    before = now()
    reservation = ledger.reserve(tenant.id, 4)
    expires = lease_of(ledger, reservation.id).expires
    assert before + LEASE <= expires.replace(tzinfo=before.tzinfo) <= now() + LEASE
    later = now() + timedelta(minutes=5)
    assert ledger.renew(reservation, at=later)
    renewed = lease_of(ledger, reservation.id).expires.replace(tzinfo=later.tzinfo)
    assert renewed == later + LEASE
    # Not expired yet, so not swept, even a minute past the first lease's end.
    assert ledger.sweep_expired(at=before + LEASE + timedelta(minutes=1)) == {}
    assert ledger.balance(tenant.id) == Balance(available=6, held=4)
    ledger.release(reservation)
    assert not ledger.renew(reservation)  # settled: nothing to renew


def test_the_sweeper_releases_expired_reservations_once(ledger: Ledger):
    tenant, other = ledger.create_tenant("studio"), ledger.create_tenant("other")
    ledger.grant(tenant.id, 10)
    ledger.grant(other.id, 10)
    stale = ledger.reserve(tenant.id, 4, reference="gen_dead")
    ledger.capture(stale, 1)  # one image delivered before its process died
    live = ledger.reserve(tenant.id, 3)
    theirs = ledger.reserve(other.id, 2)
    after_lease = now() + LEASE + timedelta(seconds=1)
    ledger.renew(live, at=after_lease)  # its holder is alive
    # One tenant's sweep leaves the others' reservations alone.
    assert ledger.sweep_expired(at=after_lease, tenant_id=tenant.id) == {stale.id: 3}
    assert ledger.balance(other.id) == Balance(available=8, held=2)
    assert ledger.sweep_expired(at=after_lease) == {theirs.id: 2}
    assert ledger.sweep_expired(at=after_lease) == {}  # nothing twice
    assert ledger.balance(tenant.id) == Balance(available=6, held=3)
    released = [e for e in ledger.entries(tenant.id) if e.kind == "release"]
    assert [(e.reservation_id, e.amount, e.reference) for e in released] == [
        (stale.id, 3, "gen_dead")
    ]
    assert lease_of(ledger, stale.id).swept_at is not None
    assert lease_of(ledger, live.id).state == "open"
    assert_consistent(ledger, tenant.id)
    assert_consistent(ledger, other.id)


def test_settling_a_swept_reservation_is_a_logged_no_op(ledger: Ledger, caplog):
    tenant = ledger.create_tenant("studio")
    ledger.grant(tenant.id, 10)
    reservation = ledger.reserve(tenant.id, 4)
    ledger.capture(reservation, 1)
    assert ledger.sweep_expired(at=now() + LEASE + timedelta(seconds=1)) == {reservation.id: 3}
    entries = len(ledger.entries(tenant.id))
    with caplog.at_level(logging.WARNING, logger="serving.core.ledger.ledger"):
        # Its holder wakes from a stall longer than the lease and settles as usual.
        assert ledger.capture(reservation, 1) is None  # delivered, not charged
        assert ledger.release(reservation) == 0  # no second refund
    assert ledger.balance(tenant.id) == Balance(available=9, held=0)
    assert len(ledger.entries(tenant.id)) == entries
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert f"capture of 1 on reservation {reservation.id}" in logged and "not charged" in logged
    assert f"release of reservation {reservation.id}" in logged
    assert ledger.settle(reservation, 1, 1) == (0, 0)  # settling in one step: the same
    assert ledger.balance(tenant.id) == Balance(available=9, held=0)
    assert len(ledger.entries(tenant.id)) == entries
    # A reservation its own holder released is still a programming error to capture.
    other = ledger.reserve(tenant.id, 2)
    ledger.release(other)
    with pytest.raises(LedgerError, match="already released"):
        ledger.capture(other, 1)
    assert_consistent(ledger, tenant.id)


def test_a_renewal_committed_first_beats_the_sweep(ledger: Ledger):
    tenant = ledger.create_tenant("studio")
    ledger.grant(tenant.id, 10)
    reservation = ledger.reserve(tenant.id, 5)
    sweep_at = now() + LEASE + timedelta(seconds=1)
    # The sweeper found it expired, but its holder renewed before the release ran.
    ledger.renew(reservation, at=sweep_at)
    with ledger.engine.begin() as conn:
        assert ledger._sweep_one(conn, reservation.id, sweep_at) is None
    assert lease_of(ledger, reservation.id).state == "open"
    assert ledger.balance(tenant.id) == Balance(available=5, held=5)


def test_reserving_first_frees_the_tenants_expired_holds(ledger: Ledger):
    tenant = ledger.create_tenant("studio")
    ledger.grant(tenant.id, 10)
    ledger.reserve(tenant.id, 10)  # its process died: the credits are stuck
    with ledger.engine.begin() as conn:  # ...for longer than the lease
        conn.execute(reservations.update().values(expires=now() - timedelta(seconds=1)))
    fresh = ledger.reserve(tenant.id, 8)
    assert ledger.balance(tenant.id) == Balance(available=2, held=8)
    assert lease_of(ledger, fresh.id).state == "open"
    assert_consistent(ledger, tenant.id)


def test_a_reservation_the_credits_cover_leaves_expired_holds_to_the_sweeper(ledger: Ledger):
    tenant = ledger.create_tenant("studio")
    ledger.grant(tenant.id, 10)
    stale = ledger.reserve(tenant.id, 4)  # its process died
    with ledger.engine.begin() as conn:
        conn.execute(reservations.update().values(expires=now() - timedelta(seconds=1)))
    fresh = ledger.reserve(tenant.id, 6)  # covered by the 6 available: no sweep on the way
    assert ledger.balance(tenant.id) == Balance(available=0, held=10)
    assert lease_of(ledger, stale.id).state == "open"
    # The next one is not covered: the stale hold goes back first, then it is granted.
    third = ledger.reserve(tenant.id, 3)
    assert lease_of(ledger, stale.id).state == "released"
    assert ledger.balance(tenant.id) == Balance(available=1, held=9)
    # Even the sweep cannot cover this one: refused, and nothing of the try is kept.
    with pytest.raises(InsufficientCredits):
        ledger.reserve(tenant.id, 5)
    assert ledger.balance(tenant.id) == Balance(available=1, held=9)
    assert {lease_of(ledger, r.id).state for r in (fresh, third)} == {"open"}
    assert_consistent(ledger, tenant.id)


def test_open_reservations_get_a_lease_when_migrated(db_url: str):
    with Ledger(db_url) as ledger:
        tenant = ledger.create_tenant("studio")
        ledger.grant(tenant.id, 10)
        held = ledger.reserve(tenant.id, 3)
        done = ledger.reserve(tenant.id, 2)
        ledger.release(done)
        downgrade(ledger.engine, "0008_pins")
        migrate(ledger.engine)
        upgraded = now()
        assert lease_of(ledger, done.id).expires is None
        expires = lease_of(ledger, held.id).expires.replace(tzinfo=upgraded.tzinfo)
        assert upgraded < expires <= upgraded + LEASE
        assert ledger.sweep_expired(at=upgraded + LEASE) == {held.id: 3}


def test_reads_do_not_wait_for_the_sqlite_write_lock(tmp_path):
    path = tmp_path / "kiln.db"
    with Ledger(f"sqlite:///{path}") as ledger:
        tenant = ledger.create_tenant("studio")
        ledger.grant(tenant.id, 10)
        writer = sqlite3.connect(path, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")  # another process is mid-write
        writer.execute("UPDATE balances SET available = available")
        answers: list = []
        reading = threading.Thread(
            target=lambda: answers.append(
                (
                    ledger.balance(tenant.id),
                    len(ledger.entries(tenant.id)),
                    ledger.sweep_expired(tenant_id=tenant.id),
                )
            )
        )
        reading.start()
        reading.join(timeout=3)  # a writer's transaction would wait out the busy timeout
        try:
            assert answers == [(Balance(available=10, held=0), 1, {})]
        finally:
            writer.execute("COMMIT")
            reading.join()
            writer.close()
