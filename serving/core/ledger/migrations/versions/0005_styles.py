"""LoRA styles: artist (everyone's) and private (one tenant's).

Revision ID: 0005_styles
Revises: 0004_tenant_slots
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_styles"
down_revision = "0004_tenant_slots"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "styles",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("owner_tenant_id", sa.String(40), nullable=True),
        sa.Column("family", sa.String(16), nullable=False),
        sa.Column("base_model", sa.String(200), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("trigger_words", sa.Text(), nullable=False),
        sa.Column("default_strength", sa.Float(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('artist', 'private')", name=op.f("ck_styles_kind_known")),
        sa.CheckConstraint(
            "(kind = 'private') = (owner_tenant_id IS NOT NULL)",
            name=op.f("ck_styles_private_has_owner"),
        ),
        sa.ForeignKeyConstraint(
            ["owner_tenant_id"], ["tenants.id"], name=op.f("fk_styles_owner_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_styles")),
    )
    op.create_index(op.f("ix_styles_owner_tenant_id"), "styles", ["owner_tenant_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_styles_owner_tenant_id"), table_name="styles")
    op.drop_table("styles")
