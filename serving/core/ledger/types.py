"""The ledger's values and errors: small frozen dataclasses, and the errors a client is
told as they are (``KilnError`` subclasses, also ``LedgerError``s)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from serving.core.errors import KilnError


class LedgerError(Exception):
    """A ledger operation that cannot be done as asked (a programming error upstream)."""


class UnknownTenant(KilnError, LedgerError):
    """No tenant with this id (404 ``tenant_not_found``)."""

    def __init__(self, tenant_id: str) -> None:
        super().__init__(404, f"no tenant {tenant_id!r}", code="tenant_not_found")
        self.tenant_id = tenant_id


class UnknownReservation(LedgerError):
    """No reservation with this id."""

    def __init__(self, reservation_id: str) -> None:
        super().__init__(f"unknown reservation {reservation_id!r}")
        self.reservation_id = reservation_id


# The most credits a tenant can hold (available and held together): 64-bit columns hold
# 9.2e18, but SQLite turns an integer sum past that into a float, silently; and a
# JavaScript client reads integers exactly only up to 2**53 (9.0e15).
MAX_CREDITS = 10**15


class CreditsLimit(KilnError, LedgerError):
    """A grant that would take the tenant past ``MAX_CREDITS`` (400 naming ``amount``)."""

    def __init__(self, amount: int, total: int | None) -> None:
        held = f"; it holds {total}" if total is not None else ""
        super().__init__(
            400,
            f"a tenant holds at most {MAX_CREDITS} credits: {amount} more would pass it{held}",
            param="amount",
            code="credits_limit",
        )


class InsufficientCredits(KilnError, LedgerError):
    """The tenant's available credits do not cover the amount (402)."""

    def __init__(self, tenant_id: str, needed: int, available: int) -> None:
        super().__init__(
            402,
            f"not enough credits: this request needs {needed}, {available} available",
            code="insufficient_credits",
            # The OpenAI SDK retries unknown statuses unless told not to.
            headers={"x-should-retry": "false"},
        )
        self.tenant_id = tenant_id
        self.needed = needed
        self.available = available


class IdempotencyConflict(KilnError, LedgerError):
    """An idempotency key reused with another body, or still in flight (409)."""

    def __init__(self, key: str, reason: str) -> None:
        what, code = {
            "body_mismatch": ("was used with a different request body", "idempotency_key_reused"),
            "in_flight": ("is still in flight", "idempotency_key_in_flight"),
        }[reason]
        super().__init__(409, f"idempotency key {key!r} {what}", param="Idempotency-Key", code=code)
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    created: datetime


@dataclass(frozen=True)
class Balance:
    """A tenant's credits: ``available`` to spend, ``held`` by open reservations."""

    available: int
    held: int

    @property
    def total(self) -> int:
        return self.available + self.held


@dataclass(frozen=True)
class Reservation:
    """Credits set aside for one request; captured per delivered image, then released."""

    id: str
    tenant_id: str
    amount: int


@dataclass(frozen=True)
class Entry:
    """One ledger line; ``amount`` and ``held`` are its signed effects (see ``schema``)."""

    id: int
    tenant_id: str
    kind: str
    amount: int
    held: int
    reservation_id: str | None
    reference: str | None
    created: datetime


@dataclass(frozen=True)
class StoredResponse:
    """The response kept under an idempotency key, replayed byte for byte."""

    status: int
    body: bytes
