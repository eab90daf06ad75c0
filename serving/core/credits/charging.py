"""Charging a generation: reserve the whole price before any work, capture per delivered
image and release the rest in one settlement (``Charge.settle``), release everything
whatever else happens (a failure or a partial batch charges only what
was delivered).

While the request runs, a task renews the reservation's lease (``KILN_RESERVATION_LEASE_S``)
every quarter lease, so a long generation keeps its hold however long it takes, and a
process that dies mid-request leaves it held for at most one lease: then the sweeper
(``Ledger.sweep_expired``) gives it back. A request that stalled past its lease and finds
its reservation swept delivers what it made free of charge (``Charge.charged`` counts
what was really captured); the ledger logs it. Never charging twice is the safe side.

Prices are whole credits: the catalog refuses fractional prices (``weights.catalog``),
because the ledger counts integers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import Connection

from serving.core.ledger import Ledger, Reservation
from serving.core.ledger.leases import keep_renewed
from weights.catalog import ModelSpec


def unit_price(spec: ModelSpec, resolution: str) -> int:
    """Credits per image of ``spec`` at ``resolution`` (whole, as the catalog guarantees)."""
    return int(spec.price(resolution, 1))


@dataclass
class Charge:
    """An open reservation of ``unit × n`` credits and what has been captured of it."""

    ledger: Ledger
    reservation: Reservation | None
    unit: int
    charged: int = 0
    settled: bool = False

    async def settle(self, images: int) -> int:
        """Capture the price of ``images`` delivered images and release the rest, in one
        ledger transaction (the end of a request's work); what has been charged in all.
        Leaving ``reserve``'s block afterwards releases nothing more."""
        return await asyncio.to_thread(self.settle_blocking, images)

    def settle_blocking(self, images: int, also: Callable[[Connection], None] | None = None) -> int:
        """``settle`` on the calling thread; ``also`` writes in the settlement's
        transaction first (``Ledger.settle``). Call off the event loop."""
        if self.reservation is None:
            if also is not None:
                with self.ledger.engine.begin() as conn:
                    also(conn)
            return self.charged
        captured, _ = self.ledger.settle(self.reservation, self.unit, images, also)
        self.charged += captured
        self.settled = True
        return self.charged


@asynccontextmanager
async def reserve(
    ledger: Ledger, tenant_id: str, unit: int, n: int, reference: str | None
) -> AsyncIterator[Charge]:
    """Reserve ``unit × n`` (``InsufficientCredits`` → 402 before any work), renew its
    lease while the block runs; on leaving, release whatever was not captured, also on
    errors and cancellation (unless ``Charge.settle`` settled it already, in the same
    transaction as its captures).
    """
    total = unit * n
    reference = reference[:200] if reference else None  # the ledger's column width
    if total == 0:  # a free model: nothing to hold
        yield Charge(ledger, None, unit)
        return
    reservation = await asyncio.to_thread(ledger.reserve, tenant_id, total, reference)
    charge = Charge(ledger, reservation, unit)
    renewing = asyncio.create_task(keep_renewed(ledger, reservation))
    try:
        yield charge
    finally:
        renewing.cancel()  # a renewal still in its thread finds the reservation closed
        if not charge.settled:
            # Shielded: a client that hangs up must not leave its credits held.
            await asyncio.shield(asyncio.to_thread(ledger.release, reservation))
