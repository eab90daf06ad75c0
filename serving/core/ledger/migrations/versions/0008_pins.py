"""Character and product pins: a tenant's IP-Adapter image embeddings, by name.

Revision ID: 0008_pins
Revises: 0007_asset_parent
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_pins"
down_revision = "0007_asset_parent"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pins",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("tenant_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.Column("components", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('character', 'product')", name=op.f("ck_pins_kind_known")),
        sa.CheckConstraint("images BETWEEN 1 AND 4", name=op.f("ck_pins_images_1_to_4")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_pins_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pins")),
    )
    op.create_index("ix_pins_tenant_id_created", "pins", ["tenant_id", "created"])


def downgrade() -> None:
    op.drop_index("ix_pins_tenant_id_created", table_name="pins")
    op.drop_table("pins")
