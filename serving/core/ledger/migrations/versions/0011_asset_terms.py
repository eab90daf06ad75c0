"""Assets record their model provider's terms (license id and URL, commercial use).

Revision ID: 0011_asset_terms
Revises: 0010_job_error_codes
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_asset_terms"
down_revision = "0010_job_error_codes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: assets made before this revision were made without recorded terms.
    with op.batch_alter_table("assets") as batch:
        batch.add_column(sa.Column("terms", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("assets") as batch:
        batch.drop_column("terms")
