"""Derived assets name their parent (edits, variations, upscales, background removal).

Revision ID: 0007_asset_parent
Revises: 0006_jobs
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_asset_parent"
down_revision = "0006_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("assets") as batch:
        batch.add_column(sa.Column("parent_id", sa.String(40), nullable=True))
        batch.create_index(batch.f("ix_assets_parent_id"), ["parent_id"])


def downgrade() -> None:
    with op.batch_alter_table("assets") as batch:
        batch.drop_index(batch.f("ix_assets_parent_id"))
        batch.drop_column("parent_id")
