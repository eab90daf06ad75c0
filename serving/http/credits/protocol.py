"""Wire shapes of ``GET /v1/credits``."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class LedgerEntry(BaseModel):
    """One ledger line: ``amount`` is its effect on the available balance, ``held`` on the
    credits held by open reservations (a capture moves held credits out: amount 0).
    """

    id: int
    kind: str
    amount: int
    held: int
    reference: str | None
    created: datetime


class CreditsResponse(BaseModel):
    """The caller's balance (available credits), credits held by requests in flight, and
    its most recent ledger entries, newest first.
    """

    object: str = "credits"
    balance: int
    held: int
    entries: list[LedgerEntry]
