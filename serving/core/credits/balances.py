"""A tenant's credits as people read and change them: the statement a tenant sees
(``GET /v1/credits``) and the grant an admin makes (``POST /v1/admin/…/credits``,
``kiln credits grant``). Blocking: callers on an event loop run them in a thread."""

from __future__ import annotations

from dataclasses import dataclass

from serving.core.ledger import Balance, Entry, Ledger


@dataclass(frozen=True)
class Statement:
    """The balance (available and held credits) and the newest ledger entries."""

    balance: Balance
    entries: list[Entry]


def statement(ledger: Ledger, tenant_id: str, limit: int, before: int | None) -> Statement:
    """The balance and the newest ``limit`` entries (``before``: an entry id, to page
    back). Holds whose lease ran out (their request's process died) are released first,
    so the balance shown is what the tenant can spend; finding none costs one lock-free
    read."""
    ledger.sweep_expired(tenant_id=tenant_id)
    balance = ledger.balance(tenant_id)
    return Statement(balance, ledger.entries(tenant_id, limit=limit, before=before))


def grant(ledger: Ledger, tenant_id: str, amount: int, reference: str) -> Balance:
    """Add ``amount`` credits to the tenant (``UnknownTenant`` if none); the balance after."""
    ledger.grant(tenant_id, amount, reference=reference)
    return ledger.balance(tenant_id)
