"""Reservation leases: an open reservation holds its credits until ``expires``, pushed on
by whoever holds it while alive; the sweeper releases expired ones and stamps
``swept_at``, so a late settlement by their holder is recognised as a no-op.

Reservations open at upgrade time get one default lease from now (their holders, if any
are still alive, renew from then on); released ones keep ``expires`` NULL. Both columns
are nullable because SQLite cannot add a NOT NULL column without a default, and
rebuilding ``reservations`` (which ledger entries and jobs reference) is not worth it.

Revision ID: 0009_reservation_leases
Revises: 0008_pins
Create Date: 2026-12-01
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0009_reservation_leases"
down_revision = "0008_pins"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
# KILN_RESERVATION_LEASE_S's default; a migration does not read settings.
DEFAULT_LEASE = timedelta(seconds=600)


def upgrade() -> None:
    with op.batch_alter_table("reservations") as batch:
        batch.add_column(sa.Column("expires", TZ, nullable=True))
        batch.add_column(sa.Column("swept_at", TZ, nullable=True))
        batch.create_index("ix_reservations_state_expires", ["state", "expires"])
    reservations = sa.table("reservations", sa.column("state"), sa.column("expires", TZ))
    op.execute(
        reservations.update()
        .where(reservations.c.state == "open")
        .values(expires=datetime.now(UTC) + DEFAULT_LEASE)
    )


def downgrade() -> None:
    # Not in batch mode: on SQLite that rebuilds the table, and dropping the old one fails
    # while ledger entries and jobs reference its rows. SQLite (3.35+) drops a column in
    # place once no index covers it.
    op.drop_index("ix_reservations_state_expires", table_name="reservations")
    op.drop_column("reservations", "swept_at")
    op.drop_column("reservations", "expires")
