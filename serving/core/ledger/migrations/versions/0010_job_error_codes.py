"""Failed jobs keep a public error code beside their public message.

Revision ID: 0010_job_error_codes
Revises: 0009_reservation_leases
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_job_error_codes"
down_revision = "0009_reservation_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("error_code", sa.String(64), nullable=True))


def downgrade() -> None:
    # In place, as 0009's downgrade: a batch rebuild of ``jobs`` would fail on SQLite
    # while job events reference its rows.
    op.drop_column("jobs", "error_code")
