"""Pins keep their pictures (for multi-reference models): a JSON list, one entry a
picture, of its SHA-256 and the asset it came from.

Revision ID: 0012_pin_pictures
Revises: 0011_asset_terms
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_pin_pictures"
down_revision = "0011_asset_terms"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: a pin made before this revision kept only its embeddings.
    with op.batch_alter_table("pins") as batch:
        batch.add_column(sa.Column("pictures", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pins") as batch:
        batch.drop_column("pictures")
