"""The ledger's operations, on SQLite and PostgreSQL: grants, reservations, captures."""

from __future__ import annotations

import pytest
from invariants import assert_consistent

from serving.core.ledger import (
    MAX_CREDITS,
    Balance,
    CreditsLimit,
    InsufficientCredits,
    Ledger,
    LedgerError,
    UnknownReservation,
    UnknownTenant,
)


def test_grant_and_balance(ledger: Ledger):
    tenant = ledger.create_tenant("studio")
    assert ledger.balance(tenant.id) == Balance(available=0, held=0)
    entry = ledger.grant(tenant.id, 25, reference="welcome")
    assert (entry.kind, entry.amount, entry.held, entry.reference) == ("grant", 25, 0, "welcome")
    assert ledger.balance(tenant.id) == Balance(available=25, held=0)
    assert ledger.tenant(tenant.id).name == "studio"
    assert_consistent(ledger, tenant.id)


def test_a_tenant_holds_at_most_max_credits(ledger: Ledger):
    """Grants stop at ``MAX_CREDITS`` held and available together. Past 64 bits SQLite
    had turned the balance into a float (every read of it a 500 after)."""
    tenant = ledger.create_tenant("rich")
    for amount in (MAX_CREDITS + 1, 2**63 - 1, 2**63, 10**30):
        with pytest.raises(CreditsLimit) as refused:
            ledger.grant(tenant.id, amount)
        assert (refused.value.status, refused.value.param) == (400, "amount")
    ledger.grant(tenant.id, MAX_CREDITS - 10)
    reservation = ledger.reserve(tenant.id, 4)  # held counts too
    with pytest.raises(CreditsLimit, match=f"it holds {MAX_CREDITS - 10}"):
        ledger.grant(tenant.id, 11)
    ledger.grant(tenant.id, 10)
    assert ledger.balance(tenant.id) == Balance(available=MAX_CREDITS - 4, held=4)
    ledger.settle(reservation, 1, 4)
    assert ledger.balance(tenant.id) == Balance(available=MAX_CREDITS - 4, held=0)
    with pytest.raises(UnknownTenant):
        ledger.grant("ten_nobody", 1)
    assert_consistent(ledger, tenant.id)
    # No catalog price is past what a tenant can hold (``weights.catalog`` says it again:
    # weights may not import serving).
    from weights.catalog import MAX_PRICE

    assert MAX_PRICE == MAX_CREDITS


def test_partial_batch_charges_only_delivered_images(ledger: Ledger):
    tenant = ledger.create_tenant("studio")
    ledger.grant(tenant.id, 10)
    reservation = ledger.reserve(tenant.id, 4, reference="gen_1")  # n=4, price 1
    assert ledger.balance(tenant.id) == Balance(available=6, held=4)
    for _ in range(3):  # the fourth image failed
        ledger.capture(reservation, 1)
    assert ledger.balance(tenant.id) == Balance(available=6, held=1)
    assert ledger.release(reservation) == 1
    assert ledger.balance(tenant.id) == Balance(available=7, held=0)  # charged 3
    kinds = [(e.kind, e.amount, e.held) for e in reversed(ledger.entries(tenant.id))]
    assert kinds == [
        ("grant", 10, 0),
        ("reserve", -4, 4),
        ("capture", 0, -1),
        ("capture", 0, -1),
        ("capture", 0, -1),
        ("release", 1, -1),
    ]
    assert {e.reference for e in ledger.entries(tenant.id)[:-1]} == {"gen_1"}
    assert_consistent(ledger, tenant.id)


def test_settle_captures_per_image_and_releases_the_rest_in_one_transaction(ledger: Ledger):
    from sqlalchemy import event

    tenant = ledger.create_tenant("studio")
    ledger.grant(tenant.id, 10)
    reservation = ledger.reserve(tenant.id, 8, reference="gen_2")  # n=4 at 2 credits
    begun: list[int] = []

    def count(conn) -> None:  # noqa: ANN001
        begun.append(1)

    event.listen(ledger.engine, "begin", count)
    try:
        assert ledger.settle(reservation, 2, 3) == (6, 2)  # the fourth image failed
    finally:
        event.remove(ledger.engine, "begin", count)
    assert len(begun) == 1
    assert ledger.balance(tenant.id) == Balance(available=4, held=0)
    kinds = [(e.kind, e.amount, e.held) for e in reversed(ledger.entries(tenant.id))]
    assert kinds[2:] == [("capture", 0, -2)] * 3 + [("release", 2, -2)]
    assert ledger.release(reservation) == 0  # settled: nothing left to release
    with pytest.raises(LedgerError, match="already released"):
        ledger.settle(reservation, 2, 1)
    nothing = ledger.reserve(tenant.id, 4)
    assert ledger.settle(nothing, 2, 0) == (0, 4)  # nothing delivered: all back
    assert ledger.balance(tenant.id) == Balance(available=4, held=0)
    assert_consistent(ledger, tenant.id)


def test_release_is_idempotent_and_closes_the_reservation(ledger: Ledger):
    tenant = ledger.create_tenant("studio")
    ledger.grant(tenant.id, 5)
    reservation = ledger.reserve(tenant.id, 5)
    assert ledger.release(reservation) == 5
    assert ledger.release(reservation) == 0
    assert ledger.release(reservation.id) == 0
    assert ledger.balance(tenant.id) == Balance(available=5, held=0)
    with pytest.raises(LedgerError, match="already released"):
        ledger.capture(reservation, 1)
    assert len(ledger.entries(tenant.id)) == 3  # grant, reserve, one release
    assert_consistent(ledger, tenant.id)


def test_fully_captured_release_returns_nothing(ledger: Ledger):
    tenant = ledger.create_tenant("studio")
    ledger.grant(tenant.id, 3)
    reservation = ledger.reserve(tenant.id, 3)
    ledger.capture(reservation, 3)
    assert ledger.release(reservation) == 0
    assert ledger.balance(tenant.id) == Balance(available=0, held=0)
    assert_consistent(ledger, tenant.id)


def test_capture_cannot_exceed_the_reservation(ledger: Ledger):
    tenant = ledger.create_tenant("studio")
    ledger.grant(tenant.id, 10)
    reservation = ledger.reserve(tenant.id, 2)
    ledger.capture(reservation, 2)
    with pytest.raises(LedgerError, match="exceeds the 0 left"):
        ledger.capture(reservation, 1)
    with pytest.raises(UnknownReservation):
        ledger.capture("res_missing", 1)
    with pytest.raises(UnknownReservation):
        ledger.release("res_missing")
    assert ledger.balance(tenant.id) == Balance(available=8, held=0)
    assert_consistent(ledger, tenant.id)


def test_insufficient_credits_changes_nothing(ledger: Ledger):
    tenant = ledger.create_tenant("studio")
    ledger.grant(tenant.id, 3)
    with pytest.raises(InsufficientCredits) as caught:
        ledger.reserve(tenant.id, 4)
    assert (caught.value.needed, caught.value.available) == (4, 3)
    with pytest.raises(InsufficientCredits):
        ledger.purchase(tenant.id, 4, reference="asset_1")
    assert ledger.balance(tenant.id) == Balance(available=3, held=0)
    assert len(ledger.entries(tenant.id)) == 1
    assert_consistent(ledger, tenant.id)


def test_license_purchase(ledger: Ledger):
    tenant = ledger.create_tenant("studio")
    ledger.grant(tenant.id, 30)
    entry = ledger.purchase(tenant.id, 20, reference="asset_1")
    assert (entry.kind, entry.amount, entry.held) == ("license_purchase", -20, 0)
    assert ledger.balance(tenant.id) == Balance(available=10, held=0)
    assert_consistent(ledger, tenant.id)


def test_unknown_tenant_and_bad_amounts(ledger: Ledger):
    for call in (
        lambda: ledger.grant("ten_missing", 1),
        lambda: ledger.reserve("ten_missing", 1),
        lambda: ledger.purchase("ten_missing", 1),
        lambda: ledger.balance("ten_missing"),
        lambda: ledger.tenant("ten_missing"),
    ):
        with pytest.raises(UnknownTenant):
            call()
    tenant = ledger.create_tenant("studio")
    for amount in (0, -1, 1.5, True):
        with pytest.raises(LedgerError, match="positive whole number"):
            ledger.grant(tenant.id, amount)
    assert ledger.entries(tenant.id) == []


def test_entries_page_newest_first_per_tenant(ledger: Ledger):
    mine, theirs = ledger.create_tenant("a"), ledger.create_tenant("b")
    for amount in range(1, 6):
        ledger.grant(mine.id, amount)
    ledger.grant(theirs.id, 100)
    first = ledger.entries(mine.id, limit=2)
    assert [e.amount for e in first] == [5, 4]
    second = ledger.entries(mine.id, limit=10, before=first[-1].id)
    assert [e.amount for e in second] == [3, 2, 1]
    assert all(e.created.tzinfo is not None for e in first + second)
    assert [e.amount for e in ledger.entries(theirs.id)] == [100]
    # Cursors no id can be (the database would refuse the number): all, or nothing.
    assert ledger.entries(mine.id, limit=10, before=10**30) == first + second
    assert ledger.entries(mine.id, limit=10, before=2**63 - 1) == first + second
    assert ledger.entries(mine.id, before=0) == ledger.entries(mine.id, before=-(10**30)) == []


def test_restart_keeps_every_entry(db_url: str):
    with Ledger(db_url) as first:
        tenant = first.create_tenant("studio")
        first.grant(tenant.id, 10)
        open_reservation = first.reserve(tenant.id, 4)
        first.capture(open_reservation, 1)
        first.purchase(tenant.id, 2)
        before = first.entries(tenant.id)
    with Ledger(db_url) as second:  # a new process would see the same
        assert second.entries(tenant.id) == before
        assert second.balance(tenant.id) == Balance(available=4, held=3)
        # A reservation survives the restart: it can still be captured and released.
        second.capture(open_reservation, 1)
        assert second.release(open_reservation) == 2
        assert assert_consistent(second, tenant.id) == Balance(available=6, held=0)
