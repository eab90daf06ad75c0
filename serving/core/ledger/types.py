"""The ledger's values and errors: small frozen dataclasses, exceptions the API maps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


class LedgerError(Exception):
    """A ledger operation that cannot be done as asked (a programming error upstream)."""


class UnknownTenant(LedgerError):
    """No tenant with this id."""

    def __init__(self, tenant_id: str) -> None:
        super().__init__(f"unknown tenant {tenant_id!r}")
        self.tenant_id = tenant_id


class UnknownReservation(LedgerError):
    """No reservation with this id."""

    def __init__(self, reservation_id: str) -> None:
        super().__init__(f"unknown reservation {reservation_id!r}")
        self.reservation_id = reservation_id


class InsufficientCredits(LedgerError):
    """The tenant's available credits do not cover the amount (HTTP 402)."""

    def __init__(self, tenant_id: str, needed: int, available: int) -> None:
        super().__init__(f"needs {needed} credits, {available} available")
        self.tenant_id = tenant_id
        self.needed = needed
        self.available = available


class IdempotencyConflict(LedgerError):
    """An idempotency key reused with another body, or still in flight (HTTP 409)."""

    def __init__(self, key: str, reason: str) -> None:
        what = {
            "body_mismatch": "was used with a different request body",
            "in_flight": "is still in flight",
        }[reason]
        super().__init__(f"idempotency key {key!r} {what}")
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
