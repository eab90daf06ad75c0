"""Charging a generation: reserve the whole price before any work, capture per delivered
image, release the rest whatever happens (a failure or a partial batch charges only what
was delivered).

Prices are whole credits: the catalog refuses fractional prices (``weights.catalog``),
because the ledger counts integers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from serving.ledger import Ledger, Reservation
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

    async def capture(self, images: int) -> int:
        """Spend the price of ``images`` delivered images (one ledger entry each)."""
        if self.reservation is None or self.unit == 0 or images == 0:
            return self.charged

        def spend() -> None:
            for _ in range(images):
                self.ledger.capture(self.reservation, self.unit)

        await asyncio.to_thread(spend)
        self.charged += self.unit * images
        return self.charged


@asynccontextmanager
async def reserve(
    ledger: Ledger, tenant_id: str, unit: int, n: int, reference: str | None
) -> AsyncIterator[Charge]:
    """Reserve ``unit × n`` (``InsufficientCredits`` → 402 before any work); on leaving,
    release whatever was not captured, also on errors and cancellation.
    """
    total = unit * n
    reference = reference[:200] if reference else None  # the ledger's column width
    if total == 0:  # a free model: nothing to hold
        yield Charge(ledger, None, unit)
        return
    reservation = await asyncio.to_thread(ledger.reserve, tenant_id, total, reference)
    charge = Charge(ledger, reservation, unit)
    try:
        yield charge
    finally:
        # Shielded: a client that hangs up must not leave its credits held.
        await asyncio.shield(asyncio.to_thread(ledger.release, reservation))
