"""Checks shared by the ledger tests (not a test module)."""

from __future__ import annotations

from sqlalchemy import func, select

from serving.core.ledger import Balance, Ledger
from serving.core.ledger.schema import entries


def assert_consistent(ledger: Ledger, tenant_id: str) -> Balance:
    """The balance equals the sum of the tenant's entries, and nothing is negative."""
    balance = ledger.balance(tenant_id)
    with ledger.engine.connect() as conn:
        amount, held = conn.execute(
            select(
                func.coalesce(func.sum(entries.c.amount), 0),
                func.coalesce(func.sum(entries.c.held), 0),
            ).where(entries.c.tenant_id == tenant_id)
        ).one()
    assert (int(amount), int(held)) == (balance.available, balance.held)
    assert balance.available >= 0 and balance.held >= 0
    return balance
